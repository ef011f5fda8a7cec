//! Owner throughput and latency: durable writes with group commit (8 and 32 concurrent
//! clients waiting for each write, and 8 clients pipelining theirs) against one commit per
//! write (a single client), and the round trip of a point read.
//!
//! `cargo bench -p store-owners --bench owner`; the writes/s of the two write benches give the
//! group-commit gain, the median of `get_round_trip` its p50.

use std::hint::black_box;
use std::path::Path;
use std::thread;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use store_core::RedbStore;
use store_owners::{OwnerConfig, OwnerHandle};

/// Concurrent clients of the group-commit benches. Each client waits for its write to be
/// durable before sending the next, so a commit holds at most `n_clients` writes: with 8
/// clients group commit can gain at most 8x over one commit per write.
const N_CLIENTS: [usize; 2] = [8, 32];
/// Writes per client per iteration of the group-commit bench.
const WRITES_PER_CLIENT: usize = 25;

fn start(path: &Path) -> OwnerHandle {
    OwnerHandle::start::<RedbStore>("agent_mailbox", path, OwnerConfig::default())
}

fn value() -> Vec<u8> {
    vec![0x5a; 200]
}

fn durable_writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("durable_writes");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));

    for n_clients in N_CLIENTS {
        let owner = start(&dir.path().join(format!("group{n_clients}.redb")));
        let mut round = 0u64;
        group.throughput(Throughput::Elements((n_clients * WRITES_PER_CLIENT) as u64));
        group.bench_function(format!("group_commit_{n_clients}_clients"), |b| {
            b.iter(|| {
                round += 1;
                thread::scope(|s| {
                    for client in 0..n_clients {
                        let owner = owner.clone();
                        s.spawn(move || {
                            for i in 0..WRITES_PER_CLIENT {
                                let key = format!("{round:08}/{client:02}/{i:04}");
                                owner.put(key.as_bytes(), &value()).unwrap();
                            }
                        });
                    }
                });
            })
        });
        owner.close();
    }

    // The same 8 clients, each keeping its writes in flight (`OwnerHandle::submit`) and
    // waiting for all their acknowledgements: commits are no longer capped at 8 writes.
    let owner = start(&dir.path().join("pipelined.redb"));
    let mut round = 0u64;
    group.throughput(Throughput::Elements((8 * WRITES_PER_CLIENT) as u64));
    group.bench_function("pipelined_8_clients", |b| {
        b.iter(|| {
            round += 1;
            thread::scope(|s| {
                for client in 0..8 {
                    let owner = owner.clone();
                    s.spawn(move || {
                        let pending: Vec<_> = (0..WRITES_PER_CLIENT)
                            .map(|i| {
                                let key = format!("{round:08}/{client:02}/{i:04}").into_bytes();
                                let value = value();
                                owner.submit(move |b| b.put(&key, &value)).unwrap()
                            })
                            .collect();
                        for write in pending {
                            write.wait().unwrap();
                        }
                    });
                }
            });
        })
    });
    owner.close();

    let owner = start(&dir.path().join("single.redb"));
    let mut n = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_commit_per_write", |b| {
        b.iter(|| {
            n += 1;
            owner.put(format!("{n:012}").as_bytes(), &value()).unwrap();
        })
    });
    owner.close();
    group.finish();
}

fn get_round_trip(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let owner = start(&dir.path().join("get.redb"));
    let n_keys = 10_000u64;
    owner
        .write(move |batch| {
            for i in 0..n_keys {
                batch.put(format!("{i:012}").as_bytes(), &value())?;
            }
            Ok(())
        })
        .unwrap();
    let mut i = 0u64;
    let mut group = c.benchmark_group("owner");
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    group.bench_function("get_round_trip", |b| {
        b.iter(|| {
            i = (i + 7919) % n_keys;
            black_box(owner.get(format!("{i:012}").as_bytes()).unwrap().unwrap());
        })
    });
    group.finish();
    owner.close();
}

criterion_group! {
    name = benches;
    // No plots: keeps `cargo bench -p store-owners -- --quick` short.
    config = Criterion::default().without_plots();
    targets = durable_writes, get_round_trip
}
criterion_main!(benches);
