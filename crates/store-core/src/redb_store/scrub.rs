//! Scrub: verify every page checksum of a live table file while its owner keeps writing.
//!
//! redb verifies checksums only in `check_integrity` and the integrity check at open, and
//! both need the `Database` alone: run on a live table they stop its owner for the whole walk
//! (seconds per GiB). A read snapshot pins every page of its commit: until it is dropped, no
//! commit frees, reuses or overwrites them. So the walk runs on a second, private view of the
//! same file:
//!
//! - the owner, between two commits, begins the snapshot's read transaction and copies the
//!   file's first page (the super-header: which commit is current, where its roots are) and
//!   the file length ([`FrozenHeader`]): the header then names exactly the snapshot's commit;
//! - on any thread, a second redb `Database` opens [`SnapshotView`]: reads of the header page
//!   come from the copy, every other read from the live file (the pinned pages do not
//!   change), and whatever redb writes while it opens (its repair commit) stays in memory;
//! - the open runs redb's own integrity check on that view: the checksum of every page of the
//!   data and system trees, the trees' structure, the table counts.
//!
//! The system tree is the exception: redb frees its pages as soon as the next commit is
//! durable (only write transactions read it), so a snapshot does not pin them. The copy of
//! the header names no system tree ([`FrozenHeader::read`] clears it in the current commit
//! slot and seals the slot with its checksum again): the scrub verifies the data tree, all
//! of the table's records, and the system tree is verified by the integrity check that
//! restores and backups run.
//!
//! A current commit that fails its checksums is corruption, even where redb could fall back
//! to the previous commit: the repair callback aborts the open at that point. Once it has
//! verified, the callback aborts the rest of the open (an allocator rebuild the scrub does not
//! need).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{Builder, DatabaseError, StorageBackend};

use crate::error::{Failure, ScrubError, classify};
use crate::store::{OnRead, ScrubStats};

/// Block size of the in-memory overlay that takes the view's writes.
const BLOCK: u64 = 4096;
/// The smallest page redb uses; the header page is at least this long.
const MIN_PAGE: usize = 512;
/// Offset of the page size (u32, little endian) in redb's super-header.
const PAGE_SIZE_OFFSET: usize = 12;
/// redb 4's commit slots: where they start, their size, and within one slot the system
/// root's presence flag, the system root, and the slot's checksum (XXH3-128, little endian).
const GOD_BYTE_OFFSET: usize = 9;
const PRIMARY_BIT: u8 = 1;
const SLOT_0_OFFSET: usize = 64;
const SLOT_SIZE: usize = 128;
const SYSTEM_ROOT_NON_NULL_OFFSET: usize = 2;
const SYSTEM_ROOT_OFFSET: usize = 40;
const SYSTEM_ROOT_SIZE: usize = 32;
const SLOT_CHECKSUM_OFFSET: usize = SLOT_SIZE - 16;
/// Cache of the scrub's own `Database`: the walk reads every page once, so a small cache.
const SCRUB_CACHE_BYTES: usize = 4 << 20;

/// The header page and length of a table file, copied at the instant its snapshot began.
///
/// It keeps the file open: a compaction or a restore may rename another file over the table
/// path, and the scrub must read the file of its snapshot.
#[derive(Debug, Clone)]
pub(super) struct FrozenHeader {
    path: PathBuf,
    file: Arc<File>,
    page: Vec<u8>,
    file_len: u64,
}

impl FrozenHeader {
    /// Copy the header of the file at `path`. Must run on the owner thread right after the
    /// snapshot's read transaction began, with no commit in between.
    pub(super) fn read(path: &Path) -> io::Result<FrozenHeader> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let mut first = vec![0u8; MIN_PAGE];
        file.read_exact_at(&mut first, 0)?;
        let page_size = u32::from_le_bytes(
            first[PAGE_SIZE_OFFSET..PAGE_SIZE_OFFSET + 4]
                .try_into()
                .expect("four bytes"),
        ) as usize;
        if !(MIN_PAGE..=1 << 24).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("header names an impossible page size ({page_size})"),
            ));
        }
        let mut page = vec![0u8; page_size];
        file.read_exact_at(&mut page, 0)?;
        forget_system_tree(&mut page)?;
        Ok(FrozenHeader {
            path: path.to_path_buf(),
            file: Arc::new(file),
            page,
            file_len,
        })
    }

    /// Walk every page of the snapshot's commit, verifying checksums and structure. The
    /// snapshot's read transaction must stay alive until this returns.
    pub(super) fn scrub(&self, on_read: OnRead) -> Result<ScrubStats, ScrubError> {
        let view = Arc::new(ViewState {
            file: self.file.clone(),
            header: self.page.clone(),
            overlay: Mutex::new(Overlay {
                len: self.file_len,
                blocks: BTreeMap::new(),
            }),
            on_read,
            cancelled: AtomicBool::new(false),
            bytes_read: AtomicU64::new(0),
        });
        let primary_failed = Arc::new(AtomicBool::new(false));
        let verified = Arc::new(AtomicBool::new(false));
        let mut builder = Builder::new();
        builder.set_cache_size(SCRUB_CACHE_BYTES);
        builder.set_check_integrity_on_open(true);
        {
            let (primary_failed, verified) = (primary_failed.clone(), verified.clone());
            // redb reports 0.0 as the check starts, 0.3 only when the current commit failed
            // its checksums (it would then fall back to the previous commit: for a scrub, a
            // finding), 0.6 once it verified (what follows rebuilds the allocator state).
            builder.set_repair_callback(move |session| {
                let progress = session.progress();
                if (0.2..0.5).contains(&progress) {
                    primary_failed.store(true, Ordering::Relaxed);
                    session.abort();
                } else if progress >= 0.5 {
                    verified.store(true, Ordering::Relaxed);
                    session.abort();
                }
            });
        }
        let opened = builder.create_with_backend(SnapshotView(view.clone()));
        let stats = ScrubStats {
            bytes_read: view.bytes_read.load(Ordering::Relaxed),
        };
        if view.cancelled.load(Ordering::Relaxed) {
            return Err(ScrubError::Cancelled);
        }
        if primary_failed.load(Ordering::Relaxed) {
            return Err(ScrubError::Corrupted(
                "the current commit's pages do not match their checksums".into(),
            ));
        }
        match opened {
            Err(DatabaseError::RepairAborted) if verified.load(Ordering::Relaxed) => Ok(stats),
            Ok(_) => Err(ScrubError::Storage(Box::new(
                redb::StorageError::Corrupted(
                    "the scrub's integrity check did not run (the header asked for none)".into(),
                )
                .into(),
            ))),
            Err(DatabaseError::Storage(e)) => match classify(e) {
                Failure::Corrupted(detail) => Err(ScrubError::Corrupted(detail)),
                Failure::Other(redb::StorageError::Io(source)) => Err(ScrubError::Io {
                    path: self.path.clone(),
                    source,
                }),
                Failure::Other(other) => Err(ScrubError::Storage(Box::new(other.into()))),
            },
            Err(other) => Err(ScrubError::Storage(Box::new(other.into()))),
        }
    }
}

/// Clear the system root of the current commit slot of `header` and seal the slot again.
/// Refuses a slot whose checksum does not verify as redb 4 computes it (a header torn or of
/// another format: the scrub must not guess).
fn forget_system_tree(header: &mut [u8]) -> io::Result<()> {
    let primary = usize::from(header[GOD_BYTE_OFFSET] & PRIMARY_BIT != 0);
    let slot = &mut header[SLOT_0_OFFSET + primary * SLOT_SIZE..][..SLOT_SIZE];
    let stored = u128::from_le_bytes(
        slot[SLOT_CHECKSUM_OFFSET..]
            .try_into()
            .expect("sixteen bytes"),
    );
    if stored != xxhash_rust::xxh3::xxh3_128(&slot[..SLOT_CHECKSUM_OFFSET]) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the current commit slot of the header does not verify",
        ));
    }
    slot[SYSTEM_ROOT_NON_NULL_OFFSET] = 0;
    slot[SYSTEM_ROOT_OFFSET..SYSTEM_ROOT_OFFSET + SYSTEM_ROOT_SIZE].fill(0);
    let sealed = xxhash_rust::xxh3::xxh3_128(&slot[..SLOT_CHECKSUM_OFFSET]);
    slot[SLOT_CHECKSUM_OFFSET..].copy_from_slice(&sealed.to_le_bytes());
    Ok(())
}

/// The scrub's private view of a live file (see the module doc).
#[derive(Debug)]
struct SnapshotView(Arc<ViewState>);

struct ViewState {
    file: Arc<File>,
    header: Vec<u8>,
    overlay: Mutex<Overlay>,
    on_read: OnRead,
    cancelled: AtomicBool,
    bytes_read: AtomicU64,
}

impl std::fmt::Debug for ViewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewState")
            .field("header_len", &self.header.len())
            .finish_non_exhaustive()
    }
}

/// What redb wrote to the view: the length it set and whole blocks it touched.
struct Overlay {
    len: u64,
    blocks: BTreeMap<u64, Vec<u8>>,
}

impl ViewState {
    /// Read `out.len()` bytes at `offset` as the file was at the snapshot, before overlay.
    fn read_base(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(out, offset)?;
        let header_len = self.header.len() as u64;
        if offset < header_len {
            let start = offset as usize;
            let end = (offset + out.len() as u64).min(header_len) as usize;
            out[..end - start].copy_from_slice(&self.header[start..end]);
        }
        Ok(())
    }
}

impl StorageBackend for SnapshotView {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.0.overlay.lock().expect("overlay lock").len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let state = &self.0;
        if state.cancelled.load(Ordering::Relaxed) || !(state.on_read)(out.len() as u64) {
            state.cancelled.store(true, Ordering::Relaxed);
            return Err(io::Error::other("scrub cancelled"));
        }
        state
            .bytes_read
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        let overlay = state.overlay.lock().expect("overlay lock");
        let end = offset + out.len() as u64;
        let first_block = offset / BLOCK * BLOCK;
        let touched: Vec<_> = overlay.blocks.range(first_block..end).collect();
        if touched.is_empty() {
            drop(overlay);
            return state.read_base(offset, out);
        }
        // Whatever is not in the overlay comes from the file (reads past the file's end are
        // only ever of blocks redb wrote itself, so they are in the overlay).
        let base_end = end.min(state.file.metadata()?.len());
        if base_end > offset {
            state.read_base(offset, &mut out[..(base_end - offset) as usize])?;
        }
        for (&block_start, block) in touched {
            let from = block_start.max(offset);
            let to = (block_start + BLOCK).min(end);
            out[(from - offset) as usize..(to - offset) as usize].copy_from_slice(
                &block[(from - block_start) as usize..(to - block_start) as usize],
            );
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut overlay = self.0.overlay.lock().expect("overlay lock");
        overlay.len = len;
        overlay.blocks.retain(|&start, _| start < len);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let state = &self.0;
        let mut overlay = state.overlay.lock().expect("overlay lock");
        let end = offset + data.len() as u64;
        let mut block_start = offset / BLOCK * BLOCK;
        while block_start < end {
            let block = match overlay.blocks.entry(block_start) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let mut block = vec![0u8; BLOCK as usize];
                    let file_len = state.file.metadata()?.len();
                    let readable = (block_start + BLOCK)
                        .min(file_len)
                        .saturating_sub(block_start);
                    if readable > 0 {
                        state.read_base(block_start, &mut block[..readable as usize])?;
                    }
                    e.insert(block)
                }
            };
            let from = block_start.max(offset);
            let to = (block_start + BLOCK).min(end);
            block[(from - block_start) as usize..(to - block_start) as usize]
                .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
            block_start += BLOCK;
        }
        Ok(())
    }
}
