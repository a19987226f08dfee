//! The sequential backend: tasks run in the coordinator's own thread, one at a time, at the
//! moment they are handed over. The baseline every speedup is measured against.

use crossbeam_channel::Sender;
use shared::outcome::Arrival;
use shared::{workload, Context, Task};

use super::{Backend, BackendKind, Event, EventSink, PoolError, Runner};

pub(crate) struct SequentialBackend {
    context: Context,
}

impl SequentialBackend {
    pub fn new(context: Context) -> Self {
        SequentialBackend { context }
    }
}

impl Backend for SequentialBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Sequential
    }

    fn start(
        &mut self,
        slot: usize,
        generation: u64,
        events: &Sender<Event>,
    ) -> Result<Box<dyn Runner>, PoolError> {
        Ok(Box::new(InlineRunner {
            context: self.context.clone(),
            sink: EventSink {
                slot,
                generation,
                events: events.clone(),
            },
        }))
    }
}

struct InlineRunner {
    context: Context,
    sink: EventSink,
}

impl Runner for InlineRunner {
    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn send(&mut self, tasks: &[Task]) -> Result<Option<u64>, String> {
        workload::run_batch(&self.context, tasks, Arrival::now(), |outcomes| {
            self.sink.outcomes(outcomes, Arrival::now())
        });
        Ok(None)
    }

    fn kill(&mut self) -> Option<String> {
        None
    }

    fn shutdown(&mut self) {}
}
