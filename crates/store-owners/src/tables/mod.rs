//! The nine hub tables: each a small spec (name, key layout, serde record) over the one
//! generic owner, with a typed handle for what the hub does with it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CallError;
use crate::owner::OwnerHandle;

/// The nine table names, in the order the hub lists them.
pub const TABLE_NAMES: [&str; 9] = [
    "agent_mailbox",
    "message_history",
    "agent_channels",
    "channel_history",
    "agentcom_config",
    "thread_messages",
    "thread_replies",
    "task_queue",
    "task_dead_letter",
];

/// Encode a record for storage.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    postcard::to_stdvec(record).expect("serializing a record into memory cannot fail")
}

/// Decode a stored record.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CallError> {
    postcard::from_bytes(bytes).map_err(|e| CallError::Decode(e.to_string()))
}

macro_rules! table_handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            owner: OwnerHandle,
        }

        impl $name {
            /// Wrap the owner of this table.
            pub fn new(owner: OwnerHandle) -> Self {
                Self { owner }
            }

            /// The generic owner behind this handle (maintenance commands, raw access).
            pub fn owner(&self) -> &OwnerHandle {
                &self.owner
            }
        }
    };
}

table_handle!(
    /// `agent_mailbox`: per-agent queue of messages.
    AgentMailbox
);
table_handle!(
    /// `message_history`: every message, queried by time range.
    MessageHistory
);
table_handle!(
    /// `agent_channels`: channel subscriptions.
    AgentChannels
);
table_handle!(
    /// `channel_history`: per-channel message log.
    ChannelHistory
);
table_handle!(
    /// `agentcom_config`: configuration keys with defaults.
    AgentcomConfig
);
table_handle!(
    /// `thread_messages`: messages of conversation threads.
    ThreadMessages
);
table_handle!(
    /// `thread_replies`: the reply index of threads.
    ThreadReplies
);
table_handle!(
    /// `task_dead_letter`: tasks whose retries are spent.
    TaskDeadLetter
);

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
}
