//! Metrics of the nine tables through `Shared::metrics`: one `stat` of each file and the
//! counters the owners published at their last commit, without a round trip through any
//! owner's queue (so it never stalls an owner, whatever the table sizes).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use store_owners::{Stores, StoresOptions};

fn nine_tables(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::open(dir.path(), StoresOptions::default()).unwrap();
    // A few thousand records per table: the cost does not depend on the table size.
    for owner in stores.owners() {
        owner
            .write(|batch| {
                for i in 0..2_000u32 {
                    batch.put(&i.to_be_bytes(), &[0x5a; 200])?;
                }
                Ok(())
            })
            .unwrap();
    }
    let mut group = c.benchmark_group("metrics");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    group.bench_function("nine_tables", |b| {
        b.iter(|| {
            for owner in stores.owners() {
                black_box(owner.shared().metrics());
            }
        })
    });
    group.finish();
    stores.close();
}

criterion_group! {
    name = benches;
    // No plots: keeps `cargo bench -p store-owners -- --quick` short.
    config = Criterion::default().without_plots();
    targets = nine_tables
}
criterion_main!(benches);
