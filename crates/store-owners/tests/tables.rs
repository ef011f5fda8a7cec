//! Every typed handle operation of the nine tables, through real owners on real files, and
//! their persistence across a close and reopen of the data dir.

use store_core::TableStore;
use store_owners::tables::{
    ChannelMessage, FailOutcome, HistoryMessage, MailboxMessage, NewTask, TaskError, TaskState,
    ThreadMessage,
};
use store_owners::{CallError, Stores, StoresOptions};

fn open(dir: &tempfile::TempDir) -> Stores {
    Stores::open(dir.path(), StoresOptions::default()).unwrap()
}

fn mail(from: &str, body: &str) -> MailboxMessage {
    MailboxMessage {
        from: from.into(),
        body: body.into(),
        sent_at_ms: 1,
    }
}

#[test]
fn mailbox_enqueue_poll_ack() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    let mb = &stores.agent_mailbox;
    assert_eq!(mb.enqueue("bob", mail("alice", "m1")).unwrap(), 1);
    assert_eq!(mb.enqueue("bob", mail("alice", "m2")).unwrap(), 2);
    assert_eq!(mb.enqueue("bob", mail("carol", "m3")).unwrap(), 3);
    // Another agent has its own numbering, and an agent whose name extends "bob" is apart.
    assert_eq!(mb.enqueue("bobby", mail("alice", "x")).unwrap(), 1);
    assert_eq!(mb.enqueue("bob\0", mail("alice", "y")).unwrap(), 1);

    let all = mb.poll("bob", 0, 100).unwrap();
    assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(all[2].record, mail("carol", "m3"));
    let after_one = mb.poll("bob", 1, 1).unwrap();
    assert_eq!(after_one.len(), 1);
    assert_eq!(after_one[0].seq, 2);
    assert!(mb.poll("nobody", 0, 10).unwrap().is_empty());

    assert_eq!(mb.ack("bob", 2).unwrap(), 2);
    assert_eq!(
        mb.poll("bob", 0, 100)
            .unwrap()
            .iter()
            .map(|m| m.seq)
            .collect::<Vec<_>>(),
        [3]
    );
    assert_eq!(mb.ack("bob", 2).unwrap(), 0, "acking again deletes nothing");
    assert_eq!(mb.ack("bob", u64::MAX).unwrap(), 1);
    assert!(mb.poll("bob", 0, 100).unwrap().is_empty());
    // Numbers are never reused after the mailbox emptied.
    assert_eq!(mb.enqueue("bob", mail("alice", "m4")).unwrap(), 4);
    assert_eq!(mb.poll("bobby", 0, 10).unwrap().len(), 1);
    assert_eq!(mb.poll("bob\0", 0, 10).unwrap().len(), 1);
}

#[test]
fn history_store_and_query_by_time_and_agent() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    let h = &stores.message_history;
    let msg = |from: &str, to: &str, at: u64| HistoryMessage {
        from: from.into(),
        to: to.into(),
        body: format!("{from}->{to}@{at}"),
        sent_at_ms: at,
    };
    let a = h.store(msg("alice", "bob", 300)).unwrap();
    let b = h.store(msg("bob", "carol", 100)).unwrap();
    let c = h.store(msg("carol", "alice", 200)).unwrap();
    let d = h.store(msg("alice", "alice", 200)).unwrap();
    assert_eq!((a, b, c, d), (1, 2, 3, 4));

    let in_time_order: Vec<u64> = h
        .query(0, u64::MAX, 100)
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(in_time_order, [b, c, d, a]);
    let window = h.query(100, 300, 100).unwrap();
    assert_eq!(
        window.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [b, c, d],
        "end is excluded"
    );
    assert_eq!(window[0].record, msg("bob", "carol", 100));
    assert_eq!(
        h.query(150, 1000, 2)
            .unwrap()
            .iter()
            .map(|m| m.seq)
            .collect::<Vec<_>>(),
        [c, d]
    );
    assert!(h.query(301, 1000, 10).unwrap().is_empty());

    let alice: Vec<u64> = h
        .query_agent("alice", 0, u64::MAX, 100)
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(
        alice,
        [c, d, a],
        "sender or recipient, a message to oneself once"
    );
    let bob = h.query_agent("bob", 0, 200, 100).unwrap();
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].record, msg("bob", "carol", 100));
    assert!(h.query_agent("dave", 0, u64::MAX, 100).unwrap().is_empty());
}

#[test]
fn channel_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    let ch = &stores.agent_channels;
    assert!(ch.subscribe("bob", "general", 10).unwrap());
    assert!(ch.subscribe("alice", "general", 11).unwrap());
    assert!(ch.subscribe("alice", "random", 12).unwrap());
    assert!(
        !ch.subscribe("alice", "general", 13).unwrap(),
        "already subscribed"
    );

    assert_eq!(ch.subscribers("general").unwrap(), ["alice", "bob"]);
    assert_eq!(ch.subscribers("random").unwrap(), ["alice"]);
    assert!(ch.subscribers("gen").unwrap().is_empty());
    assert_eq!(ch.channels_of("alice").unwrap(), ["general", "random"]);
    assert_eq!(ch.channels_of("bob").unwrap(), ["general"]);

    assert!(ch.unsubscribe("alice", "general").unwrap());
    assert!(
        !ch.unsubscribe("alice", "general").unwrap(),
        "no longer subscribed"
    );
    assert_eq!(ch.subscribers("general").unwrap(), ["bob"]);
    assert_eq!(ch.channels_of("alice").unwrap(), ["random"]);
}

#[test]
fn channel_history_append_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    let ch = &stores.channel_history;
    let post = |n: u64| ChannelMessage {
        from: "alice".into(),
        body: format!("post {n}"),
        sent_at_ms: n,
    };
    for n in 1..=5 {
        assert_eq!(ch.append("general", post(n)).unwrap(), n);
    }
    assert_eq!(ch.append("random", post(9)).unwrap(), 1);

    let read = ch.read("general", 0, 100).unwrap();
    assert_eq!(read.len(), 5);
    assert_eq!(read[4].record, post(5));
    let page = ch.read("general", 2, 2).unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(ch.read("general", 5, 10).unwrap().is_empty());
    assert_eq!(ch.read("random", 0, 10).unwrap()[0].record, post(9));
}

#[test]
fn config_get_put_default_list_remove() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    let cfg = &stores.agentcom_config;
    assert_eq!(cfg.get("retention_days").unwrap(), None);
    assert_eq!(cfg.get_or("retention_days", "30").unwrap(), "30");
    assert_eq!(cfg.put("retention_days", "7", 100).unwrap(), None);
    assert_eq!(cfg.get_or("retention_days", "30").unwrap(), "7");
    let previous = cfg.put("retention_days", "14", 200).unwrap().unwrap();
    assert_eq!(
        (previous.value.as_str(), previous.updated_at_ms),
        ("7", 100)
    );
    cfg.put("motd", "hello", 300).unwrap();

    let entry = cfg.get("retention_days").unwrap().unwrap();
    assert_eq!((entry.value.as_str(), entry.updated_at_ms), ("14", 200));
    let listed: Vec<(String, String)> = cfg
        .list()
        .unwrap()
        .into_iter()
        .map(|(name, e)| (name, e.value))
        .collect();
    assert_eq!(
        listed,
        [
            ("motd".to_string(), "hello".to_string()),
            ("retention_days".into(), "14".into())
        ]
    );

    assert!(cfg.remove("motd").unwrap());
    assert!(!cfg.remove("motd").unwrap());
    assert_eq!(cfg.get_or("motd", "none").unwrap(), "none");
}

#[test]
fn thread_messages_and_reply_index() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    let tm = &stores.thread_messages;
    let msg = |id: &str| ThreadMessage {
        message_id: id.into(),
        from: "alice".into(),
        body: id.into(),
        sent_at_ms: 5,
    };
    assert_eq!(tm.add("t1", msg("m1")).unwrap(), 1);
    assert_eq!(tm.add("t1", msg("m2")).unwrap(), 2);
    assert_eq!(tm.add("t2", msg("n1")).unwrap(), 1);
    let t1 = tm.list("t1", 0, 10).unwrap();
    assert_eq!(
        t1.iter()
            .map(|m| m.record.message_id.as_str())
            .collect::<Vec<_>>(),
        ["m1", "m2"]
    );
    assert_eq!(tm.list("t1", 1, 10).unwrap()[0].record, msg("m2"));
    assert!(tm.list("t3", 0, 10).unwrap().is_empty());

    let tr = &stores.thread_replies;
    assert!(tr.record("m1", "m3", 20).unwrap());
    assert!(tr.record("m1", "m2", 10).unwrap());
    assert!(!tr.record("m1", "m2", 99).unwrap(), "already recorded");
    assert!(tr.record("m2", "m4", 30).unwrap());
    let replies = tr.replies("m1").unwrap();
    assert_eq!(
        replies
            .iter()
            .map(|r| (r.child.as_str(), r.replied_at_ms))
            .collect::<Vec<_>>(),
        [("m2", 10), ("m3", 20)]
    );
    assert_eq!(tr.replies("m2").unwrap().len(), 1);
    assert!(tr.replies("m4").unwrap().is_empty());
}

fn task(kind: &str, max_retries: u32) -> NewTask {
    NewTask {
        kind: kind.into(),
        payload: kind.as_bytes().to_vec(),
        max_retries,
        submitted_at_ms: 1,
    }
}

#[test]
fn task_submit_assign_complete() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    let q = &stores.task_queue;
    let a = q.submit(task("a", 0)).unwrap();
    let b = q.submit(task("b", 0)).unwrap();
    assert!(a < b);
    assert_eq!(
        q.get(a).unwrap().unwrap().state,
        TaskState::Pending { ticket: a + 1 }
    );

    let first = q.assign("w1").unwrap().unwrap();
    assert_eq!((first.id, first.spec.kind.as_str()), (a, "a"));
    assert_eq!(
        first.state,
        TaskState::Assigned {
            worker: "w1".into()
        }
    );
    assert_eq!(q.get(a).unwrap().unwrap(), first);
    let second = q.assign("w2").unwrap().unwrap();
    assert_eq!(second.id, b);
    assert_eq!(q.assign("w3").unwrap(), None, "nothing pending");

    q.complete(a).unwrap();
    assert_eq!(q.get(a).unwrap(), None);
    let result = q.complete(a);
    assert!(
        matches!(result, Err(TaskError::NotFound(id)) if id == a),
        "{result:?}"
    );
    let result = q.complete(999);
    assert!(
        matches!(result, Err(TaskError::NotFound(999))),
        "{result:?}"
    );
    let result = q.fail(999, "x", 1);
    assert!(
        matches!(result, Err(TaskError::NotFound(999))),
        "{result:?}"
    );

    let c = q.submit(task("c", 0)).unwrap();
    assert!(
        matches!(q.complete(c), Err(TaskError::WrongState { id, state: TaskState::Pending { .. } }) if id == c)
    );
    assert!(matches!(
        q.fail(c, "x", 1),
        Err(TaskError::WrongState { .. })
    ));
    assert!(stores.task_dead_letter.list(0, 10).unwrap().is_empty());
}

#[test]
fn task_fail_retries_then_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    let q = &stores.task_queue;
    let id = q.submit(task("flaky", 2)).unwrap();
    let other = q.submit(task("other", 0)).unwrap();

    assert_eq!(q.assign("w").unwrap().unwrap().id, id);
    assert_eq!(
        q.fail(id, "boom 1", 10).unwrap(),
        FailOutcome::Retrying { attempts: 1 }
    );
    // A retried task goes to the back of the queue.
    assert_eq!(q.assign("w").unwrap().unwrap().id, other);
    let again = q.assign("w").unwrap().unwrap();
    assert_eq!(
        (again.id, again.attempts, again.last_error.as_deref()),
        (id, 1, Some("boom 1"))
    );
    assert_eq!(
        q.fail(id, "boom 2", 20).unwrap(),
        FailOutcome::Retrying { attempts: 2 }
    );
    assert_eq!(q.assign("w").unwrap().unwrap().id, id);
    assert_eq!(
        q.fail(id, "boom 3", 30).unwrap(),
        FailOutcome::DeadLettered { attempts: 3 }
    );

    assert_eq!(q.get(id).unwrap(), None, "gone from the queue");
    assert_eq!(q.assign("w").unwrap(), None);
    let dead = stores.task_dead_letter.get(id).unwrap().unwrap();
    assert_eq!(dead.dead_at_ms, 30);
    assert_eq!(
        (dead.task.attempts, dead.task.last_error.as_deref()),
        (3, Some("boom 3"))
    );
    assert_eq!(dead.task.spec, task("flaky", 2));

    // No retries: the first failure dead-letters.
    let once = q.submit(task("once", 0)).unwrap();
    q.assign("w").unwrap();
    assert_eq!(
        q.fail(once, "nope", 40).unwrap(),
        FailOutcome::DeadLettered { attempts: 1 }
    );
    let listed: Vec<u64> = stores
        .task_dead_letter
        .list(0, 10)
        .unwrap()
        .iter()
        .map(|d| d.task.id)
        .collect();
    assert_eq!(listed, [id, once]);
    assert_eq!(stores.task_dead_letter.list(id, 10).unwrap().len(), 1);

    assert!(stores.task_dead_letter.remove(id).unwrap());
    assert!(!stores.task_dead_letter.remove(id).unwrap());
    assert_eq!(stores.task_dead_letter.get(id).unwrap(), None);
    q.complete(other).unwrap();
}

/// A move to the dead-letter table interrupted after step 1 (the dead-letter table refuses
/// writes) leaves the task in the queue, marked; `fail` again or `resume_dead_lettering`
/// finishes it.
#[test]
fn interrupted_dead_letter_move_is_finished_later() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    let q = &stores.task_queue;
    let a = q.submit(task("a", 0)).unwrap();
    let b = q.submit(task("b", 0)).unwrap();
    q.assign("w").unwrap();
    q.assign("w").unwrap();

    // A dead-letter owner whose file cannot open (its directory does not exist) refuses
    // every write, so the move stops after step 1.
    let refusing = store_owners::OwnerHandle::start::<store_core::RedbStore>(
        "task_dead_letter",
        &dir.path()
            .join("elsewhere/missing-dir/task_dead_letter.redb"),
        Default::default(),
    );
    let cut_off_queue = store_owners::tables::TaskQueue::new(q.owner().clone(), refusing);
    let error = cut_off_queue.fail(a, "boom", 5).unwrap_err();
    assert!(
        matches!(error, TaskError::Call(CallError::Unavailable { .. })),
        "{error:?}"
    );
    assert_eq!(q.get(a).unwrap().unwrap().state, TaskState::DeadLettering);
    assert!(matches!(q.complete(a), Err(TaskError::WrongState { .. })));
    assert_eq!(
        q.assign("w2").unwrap(),
        None,
        "a marked task is never assigned"
    );

    let error = cut_off_queue.fail(b, "boom", 6).unwrap_err();
    assert!(matches!(error, TaskError::Call(_)));
    // Calling fail again through the real handle finishes the move of `a`...
    assert_eq!(
        q.fail(a, "ignored", 7).unwrap(),
        FailOutcome::DeadLettered { attempts: 1 }
    );
    // ...and resuming finishes the rest.
    assert_eq!(q.resume_dead_lettering(8).unwrap(), 1);
    assert_eq!(q.resume_dead_lettering(9).unwrap(), 0);
    assert_eq!(q.get(a).unwrap(), None);
    assert_eq!(q.get(b).unwrap(), None);
    let dead = stores.task_dead_letter.list(0, 10).unwrap();
    assert_eq!(
        dead.iter()
            .map(|d| (d.task.id, d.dead_at_ms))
            .collect::<Vec<_>>(),
        [(a, 7), (b, 8)]
    );
    assert_eq!(dead[0].task.last_error.as_deref(), Some("boom"));
}

#[test]
fn table_contents_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let stores = open(&dir);
        stores
            .agent_mailbox
            .enqueue("bob", mail("alice", "kept"))
            .unwrap();
        stores.agentcom_config.put("k", "v", 1).unwrap();
        stores
            .agent_channels
            .subscribe("bob", "general", 1)
            .unwrap();
        stores.task_queue.submit(task("t", 1)).unwrap();
        stores.close();
    }
    let stores = open(&dir);
    assert_eq!(
        stores.agent_mailbox.poll("bob", 0, 10).unwrap()[0].record,
        mail("alice", "kept")
    );
    assert_eq!(
        stores
            .agent_mailbox
            .enqueue("bob", mail("alice", "next"))
            .unwrap(),
        2
    );
    assert_eq!(stores.agentcom_config.get_or("k", "default").unwrap(), "v");
    assert_eq!(
        stores.agent_channels.subscribers("general").unwrap(),
        ["bob"]
    );
    assert_eq!(
        stores.task_queue.assign("w").unwrap().unwrap().spec.kind,
        "t"
    );
}

/// A `RedbStore` whose committed-state reads report corruption once `poisoned` is set, as a
/// damaged page would.
struct PoisonedReads {
    inner: store_core::RedbStore,
    poisoned: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PoisonedReads {
    fn check(&self) -> Result<(), store_core::ReadError> {
        if self.poisoned.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(store_core::ReadError::Corrupted(
                "injected: bad page checksum".into(),
            ));
        }
        Ok(())
    }
}

impl store_core::TableStore for PoisonedReads {
    type Snapshot = store_core::RedbSnapshot;
    type Batch<'a> = store_core::redb_store::RedbBatch<'a>;
    type Replaced = store_core::RedbReplaced;

    fn open(
        path: &std::path::Path,
        options: &store_core::StoreOptions,
    ) -> Result<Self, store_core::OpenError> {
        Ok(PoisonedReads {
            inner: store_core::RedbStore::open(path, options)?,
            poisoned: Default::default(),
        })
    }
    fn create_empty(
        path: &std::path::Path,
        options: &store_core::StoreOptions,
    ) -> Result<(), store_core::OpenError> {
        store_core::RedbStore::create_empty(path, options)
    }
    fn swap_in(&mut self, fresh: Self) -> Result<store_core::RedbReplaced, store_core::SwapError> {
        self.inner.swap_in(fresh.inner)
    }
    fn path(&self) -> &std::path::Path {
        self.inner.path()
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, store_core::ReadError> {
        self.check()?;
        self.inner.get(key)
    }
    fn scan(
        &self,
        range: &store_core::KeyRange,
        limit: usize,
    ) -> Result<Vec<store_core::Record>, store_core::ReadError> {
        self.check()?;
        self.inner.scan(range, limit)
    }
    fn begin_batch(&mut self) -> Result<Self::Batch<'_>, store_core::WriteError> {
        self.inner.begin_batch()
    }
    fn snapshot(&self) -> Result<Self::Snapshot, store_core::ReadError> {
        self.inner.snapshot()
    }
    fn scrub_snapshot(&self) -> Result<Self::Snapshot, store_core::ScrubError> {
        self.inner.scrub_snapshot()
    }
    fn counters(&self) -> store_core::TableCounters {
        self.inner.counters()
    }
    fn compact_in_place(&mut self) -> Result<(), store_core::CompactError> {
        self.inner.compact_in_place()
    }
    fn check_integrity(&mut self) -> Result<(), store_core::IntegrityError> {
        self.inner.check_integrity()
    }
    fn close(self) -> Result<(), store_core::CloseError> {
        self.inner.close()
    }
}

/// Corruption met by a typed read is returned as `CallError::Corrupted` and reported (the
/// table is marked corrupted and the recovery channel hears of it), even though the typed
/// handle converts storage errors into its own result inside the owner.
#[test]
fn corruption_met_by_a_typed_read_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent_mailbox.redb");
    let poisoned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = PoisonedReads {
        inner: store_core::RedbStore::open(&path, &store_core::StoreOptions::default()).unwrap(),
        poisoned: poisoned.clone(),
    };
    let (reports_tx, reports) = crossbeam_channel::unbounded();
    let config = store_owners::OwnerConfig {
        corruption_reports: Some(reports_tx),
        ..Default::default()
    };
    let mailbox = store_owners::tables::AgentMailbox::new(
        store_owners::OwnerHandle::start_with_store("agent_mailbox", store, config),
    );
    mailbox.enqueue("bob", mail("alice", "m1")).unwrap();
    assert_eq!(mailbox.poll("bob", 0, 10).unwrap().len(), 1);

    poisoned.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        mailbox.poll("bob", 0, 10),
        Err(CallError::Corrupted(_))
    ));
    assert!(matches!(
        mailbox.owner().shared().status(),
        store_owners::TableStatus::Corrupted(_)
    ));
    assert_eq!(reports.try_recv(), Ok("agent_mailbox"));
}

/// A move to the dead-letter table interrupted by a crash is finished by the next
/// `Stores::open`, before the hub touches the queue.
#[test]
fn reopening_finishes_an_interrupted_dead_letter_move() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let stores = open(&dir);
        let q = &stores.task_queue;
        let id = q.submit(task("c", 0)).unwrap();
        q.assign("w").unwrap();
        let refusing = store_owners::OwnerHandle::start::<store_core::RedbStore>(
            "task_dead_letter",
            &dir.path()
                .join("elsewhere/missing-dir/task_dead_letter.redb"),
            Default::default(),
        );
        let cut_off_queue = store_owners::tables::TaskQueue::new(q.owner().clone(), refusing);
        assert!(cut_off_queue.fail(id, "boom", 5).is_err());
        assert_eq!(q.get(id).unwrap().unwrap().state, TaskState::DeadLettering);
        id
    };
    let stores = open(&dir);
    assert_eq!(stores.task_queue.get(id).unwrap(), None);
    let dead = stores.task_dead_letter.list(0, 10).unwrap();
    assert_eq!(dead.iter().map(|d| d.task.id).collect::<Vec<_>>(), [id]);
}
