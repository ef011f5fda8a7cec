//! `task_queue` (tasks waiting for, or assigned to, a worker) and `task_dead_letter` (tasks
//! whose retries are spent).
//!
//! Life of a task: [`TaskQueue::submit`] makes it pending; [`TaskQueue::assign`] hands the
//! oldest pending task to a worker; the worker calls [`TaskQueue::complete`] (the task is
//! deleted) or [`TaskQueue::fail`]. A failure counts an attempt; while `attempts <=
//! max_retries` the task goes back to the end of the queue, otherwise it moves to
//! `task_dead_letter`.
//!
//! The move spans two tables (two owners, two transactions), so it is done in three durable
//! steps and is at-least-once, never lossy:
//!
//! 1. In `task_queue`, the task is marked [`TaskState::DeadLettering`] (and indexed as such);
//!    from then on it is neither assignable nor completable.
//! 2. The task is written to `task_dead_letter` (an idempotent put, keyed by task id).
//! 3. The task is deleted from `task_queue`.
//!
//! If the process stops between steps (or the dead-letter table refuses the write), the task
//! is still in `task_queue`, marked; calling `fail` on it again, or
//! [`TaskQueue::resume_dead_lettering`] (to be run once at start-up), finishes the move. At
//! worst the dead-letter put is repeated.
//!
//! `task_queue` key layout:
//!
//! - `[0x00]` → the last number handed out (`u64` big-endian); task ids and queue tickets
//!   share it.
//! - `[0x01] u64(id)` → [`Task`] (postcard).
//! - `[0x02] u64(ticket)` → `u64(id)`: the pending tasks in queue order (a retried task gets a
//!   new ticket, so it goes to the back).
//! - `[0x03] u64(id)` → empty: tasks marked [`TaskState::DeadLettering`].
//!
//! `task_dead_letter` key layout:
//!
//! - `[0x01] u64(id)` → [`DeadTask`] (postcard), in task-id order.

use serde::{Deserialize, Serialize};
use store_core::WriteBatch;

use super::keys::{Key, KeyReader, u64_value};
use super::{JobError, decode, encode, get_record, get_record_in, mutate, query, table_handle};
use crate::error::CallError;
use crate::owner::OwnerHandle;

const LAST_NUMBER: u8 = 0x00;
const TASK: u8 = 0x01;
const PENDING: u8 = 0x02;
const DEAD_LETTERING: u8 = 0x03;

const DEAD: u8 = 0x01;

/// A task as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    /// What kind of work it is (the worker dispatches on it).
    pub kind: String,
    /// The work's input.
    pub payload: Vec<u8>,
    /// How many times it may be retried after its first failure before it is dead-lettered.
    pub max_retries: u32,
    /// When it was submitted, in milliseconds since the Unix epoch.
    pub submitted_at_ms: u64,
}

/// Where a task is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Waiting in the queue under `ticket`.
    Pending {
        /// Its place in the queue.
        ticket: u64,
    },
    /// Handed to a worker.
    Assigned {
        /// The worker running it.
        worker: String,
    },
    /// Its retries are spent and it is being moved to `task_dead_letter`.
    DeadLettering,
}

/// A task in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Assigned by the queue at submission, starting at 1.
    pub id: u64,
    /// What was submitted.
    pub spec: NewTask,
    /// Where it is in its life.
    pub state: TaskState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
}

/// A task whose retries are spent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadTask {
    /// The task as it was when its last attempt failed (`last_error` says why).
    pub task: Task,
    /// When its last attempt failed, in milliseconds since the Unix epoch.
    pub dead_at_ms: u64,
}

/// What a failure did to a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailOutcome {
    /// Back in the queue for another attempt.
    Retrying {
        /// Failed attempts so far.
        attempts: u32,
    },
    /// Moved to `task_dead_letter`.
    DeadLettered {
        /// Failed attempts in all.
        attempts: u32,
    },
}

/// A task operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// No task with this id is in the queue.
    #[error("task {0} not found")]
    NotFound(u64),
    /// The task is not in a state that allows the operation.
    #[error("task {id} is {state:?}; the operation needs it assigned")]
    WrongState {
        /// The task.
        id: u64,
        /// Its state.
        state: TaskState,
    },
    /// The call through the owner failed.
    #[error(transparent)]
    Call(#[from] CallError),
}

fn task_key(id: u64) -> Key {
    Key::tag(TASK).u64(id)
}

fn dead_key(id: u64) -> Key {
    Key::tag(DEAD).u64(id)
}

/// The next number of the shared counter.
fn next_number(batch: &mut dyn WriteBatch) -> Result<u64, JobError<TaskError>> {
    let counter = Key::tag(LAST_NUMBER);
    let last = match batch.get(counter.bytes())? {
        Some(bytes) => u64_value(&bytes)?,
        None => 0,
    };
    batch.put(counter.bytes(), &(last + 1).to_be_bytes())?;
    Ok(last + 1)
}

/// Put `task` back at the end of the queue.
fn enqueue(batch: &mut dyn WriteBatch, task: &mut Task) -> Result<(), JobError<TaskError>> {
    let ticket = next_number(batch)?;
    task.state = TaskState::Pending { ticket };
    batch.put(
        Key::tag(PENDING).u64(ticket).bytes(),
        &task.id.to_be_bytes(),
    )?;
    batch.put(task_key(task.id).bytes(), &encode(task))?;
    Ok(())
}

fn load(batch: &dyn WriteBatch, id: u64) -> Result<Task, JobError<TaskError>> {
    get_record_in(batch, task_key(id).bytes())?.ok_or(JobError::Reject(TaskError::NotFound(id)))
}

/// `task_queue`: tasks to run; a task whose retries are spent moves to `task_dead_letter`.
#[derive(Debug, Clone)]
pub struct TaskQueue {
    owner: OwnerHandle,
    dead_letter: OwnerHandle,
}

impl TaskQueue {
    /// Wrap the owners of the queue and of its dead-letter table.
    pub fn new(owner: OwnerHandle, dead_letter: OwnerHandle) -> Self {
        TaskQueue { owner, dead_letter }
    }

    /// The generic owner behind this handle.
    pub fn owner(&self) -> &OwnerHandle {
        &self.owner
    }

    /// The dead-letter owner failed tasks move to.
    pub fn dead_letter(&self) -> &OwnerHandle {
        &self.dead_letter
    }

    /// Add a task at the end of the queue; returns its id.
    pub fn submit(&self, spec: NewTask) -> Result<u64, TaskError> {
        mutate(&self.owner, move |batch| {
            let id = next_number(batch)?;
            let mut task = Task {
                id,
                spec: spec.clone(),
                // Set by `enqueue`.
                state: TaskState::Pending { ticket: 0 },
                attempts: 0,
                last_error: None,
            };
            enqueue(batch, &mut task)?;
            Ok(id)
        })
    }

    /// Hand the oldest pending task to `worker`; `None` when nothing is pending.
    pub fn assign(&self, worker: &str) -> Result<Option<Task>, TaskError> {
        let worker = worker.to_string();
        mutate(&self.owner, move |batch| {
            let Some(first) = batch.scan(&Key::tag(PENDING).range(), 1)?.pop() else {
                return Ok(None);
            };
            let id = u64_value(&first.value)?;
            let mut task = load(batch, id)?;
            task.state = TaskState::Assigned {
                worker: worker.clone(),
            };
            batch.delete(&first.key)?;
            batch.put(task_key(id).bytes(), &encode(&task))?;
            Ok(Some(task))
        })
    }

    /// The task `id`, if it is in the queue.
    pub fn get(&self, id: u64) -> Result<Option<Task>, TaskError> {
        query(&self.owner, move |view| {
            Ok(get_record(view, task_key(id).bytes())?)
        })
    }

    /// The assigned task `id` is done: delete it.
    pub fn complete(&self, id: u64) -> Result<(), TaskError> {
        mutate(&self.owner, move |batch| {
            let task = load(batch, id)?;
            if !matches!(task.state, TaskState::Assigned { .. }) {
                return Err(JobError::Reject(TaskError::WrongState {
                    id,
                    state: task.state,
                }));
            }
            batch.delete(task_key(id).bytes())?;
            Ok(())
        })
    }

    /// The assigned task `id` failed with `error`: back to the end of the queue while retries
    /// remain, otherwise moved to `task_dead_letter` (see the module doc). Calling it again on
    /// a task whose move was interrupted finishes the move.
    pub fn fail(&self, id: u64, error: &str, failed_at_ms: u64) -> Result<FailOutcome, TaskError> {
        let error = error.to_string();
        let marked = mutate(&self.owner, move |batch| {
            let mut task = load(batch, id)?;
            match task.state {
                TaskState::Assigned { .. } => {}
                TaskState::DeadLettering => return Ok(Err(task)),
                TaskState::Pending { .. } => {
                    return Err(JobError::Reject(TaskError::WrongState {
                        id,
                        state: task.state,
                    }));
                }
            }
            task.attempts += 1;
            task.last_error = Some(error.clone());
            if task.attempts <= task.spec.max_retries {
                enqueue(batch, &mut task)?;
                return Ok(Ok(FailOutcome::Retrying {
                    attempts: task.attempts,
                }));
            }
            task.state = TaskState::DeadLettering;
            batch.put(Key::tag(DEAD_LETTERING).u64(id).bytes(), &[])?;
            batch.put(task_key(id).bytes(), &encode(&task))?;
            Ok(Err(task))
        })?;
        match marked {
            Ok(retrying) => Ok(retrying),
            Err(task) => {
                let attempts = task.attempts;
                self.finish_move(task, failed_at_ms)?;
                Ok(FailOutcome::DeadLettered { attempts })
            }
        }
    }

    /// Steps 2 and 3 of a move to the dead-letter table.
    fn finish_move(&self, task: Task, dead_at_ms: u64) -> Result<(), TaskError> {
        let id = task.id;
        let dead = encode(&DeadTask { task, dead_at_ms });
        mutate(&self.dead_letter, move |batch| {
            batch.put(dead_key(id).bytes(), &dead)?;
            Ok::<_, JobError<TaskError>>(())
        })?;
        mutate(&self.owner, move |batch| {
            // Gone already: a concurrent call finished the same move.
            if let Some(task) = get_record_in::<Task, TaskError>(batch, task_key(id).bytes())?
                && task.state == TaskState::DeadLettering
            {
                batch.delete(task_key(id).bytes())?;
            }
            batch.delete(Key::tag(DEAD_LETTERING).u64(id).bytes())?;
            Ok(())
        })
    }

    /// Finish every move to the dead-letter table that was interrupted (the process stopped
    /// between its steps); returns how many were finished. `dead_at_ms` stamps them.
    pub fn resume_dead_lettering(&self, dead_at_ms: u64) -> Result<usize, TaskError> {
        let marked: Vec<Task> = query(&self.owner, |view| {
            let mut tasks = Vec::new();
            for r in view
                .scan(&Key::tag(DEAD_LETTERING).range(), usize::MAX)
                .map_err(CallError::from)?
            {
                let id = KeyReader::new(&r.key, DEAD_LETTERING)?.u64()?;
                if let Some(task) = get_record::<Task>(view, task_key(id).bytes())? {
                    tasks.push(task);
                }
            }
            Ok::<_, TaskError>(tasks)
        })?;
        let n_moved = marked.len();
        for task in marked {
            self.finish_move(task, dead_at_ms)?;
        }
        Ok(n_moved)
    }
}

table_handle!(
    /// `task_dead_letter`: tasks whose retries are spent.
    TaskDeadLetter
);

impl TaskDeadLetter {
    /// Up to `limit` dead tasks with an id above `after`, in id order.
    pub fn list(&self, after: u64, limit: usize) -> Result<Vec<DeadTask>, CallError> {
        query(&self.owner, move |view| {
            view.scan(&Key::tag(DEAD).range_after(after), limit)?
                .iter()
                .map(|r| decode(&r.value))
                .collect()
        })
    }

    /// The dead task `id`, if present.
    pub fn get(&self, id: u64) -> Result<Option<DeadTask>, CallError> {
        query(&self.owner, move |view| {
            get_record(view, dead_key(id).bytes())
        })
    }

    /// Drop the dead task `id` (after an operator dealt with it); returns whether it existed.
    pub fn remove(&self, id: u64) -> Result<bool, CallError> {
        mutate(&self.owner, move |batch| {
            Ok::<_, JobError<CallError>>(batch.delete(dead_key(id).bytes())?)
        })
    }
}
