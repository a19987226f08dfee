//! The task API: what a user implements to run their own code on a pool.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::TaskError;

/// A kind of work the pool can run: your type, your input, your output.
///
/// The value of the type itself carries the settings every task of a run shares; it is
/// sent to each worker once, when the worker joins. Inputs and outputs cross the process
/// boundary with serde (bincode), so they must not borrow. `run` is plain code: return
/// an [`ErrorKind`](crate::ErrorKind) that says whether another attempt may succeed, and
/// the pool retries, times out, isolates and reorders around it. A panic in `run` is
/// caught and becomes a `panicked` outcome.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use workpool::{Attempt, ErrorKind, Task, TaskError};
///
/// #[derive(Serialize, Deserialize)]
/// struct Square;
///
/// impl Task for Square {
///     const NAME: &'static str = "square";
///     type Input = u64;
///     type Output = u64;
///     fn run(&self, n: &u64, _: &Attempt) -> Result<u64, TaskError> {
///         n.checked_mul(*n)
///             .ok_or_else(|| TaskError::new(ErrorKind::InvalidInput, "overflow"))
///     }
/// }
/// ```
pub trait Task: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The name a worker knows this task type by: unique among the task types of one
    /// program, and the same in the coordinator and its workers.
    const NAME: &'static str;
    /// One task's input.
    type Input: Serialize + DeserializeOwned + Clone + Send + 'static;
    /// What one task produces.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Runs one attempt at one task.
    fn run(&self, input: &Self::Input, attempt: &Attempt) -> Result<Self::Output, TaskError>;

    /// Runs one attempt at one task that owns its input: a worker process decodes each
    /// input from its message, and a worker thread is sent its own copy of the batch;
    /// neither has a use for it afterwards (a retry is sent again from the pool's copy,
    /// which keeps the original), so they hand the input over instead of lending it.
    /// Override it when the output can reuse the input's memory, as an echo moving its
    /// bytes instead of copying them; whatever `run_owned` does to the input, another
    /// attempt still gets the original. It must behave as `run` does (the sequential
    /// backend, which lends the pool's own copy of each input, calls `run`). The default
    /// lends the input to `run`.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use workpool::{Attempt, Task, TaskError};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Upper;
    ///
    /// impl Task for Upper {
    ///     const NAME: &'static str = "upper";
    ///     type Input = String;
    ///     type Output = String;
    ///     fn run(&self, text: &String, _: &Attempt) -> Result<String, TaskError> {
    ///         Ok(text.to_ascii_uppercase())
    ///     }
    ///     fn run_owned(&self, mut text: String, _: &Attempt) -> Result<String, TaskError> {
    ///         text.make_ascii_uppercase(); // In place: no second string.
    ///         Ok(text)
    ///     }
    /// }
    /// ```
    fn run_owned(&self, input: Self::Input, attempt: &Attempt) -> Result<Self::Output, TaskError> {
        self.run(&input, attempt)
    }

    /// Bytes of bulk data an input carries: the pool keeps each batch's message bounded by
    /// their sum. The default (0) suits inputs of a few bytes.
    fn input_bytes(_input: &Self::Input) -> usize {
        0
    }
}

/// Which attempt at which task `run` is making.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The task's position in the run's input.
    pub index: u64,
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub number: u32,
    /// The run's seed ([`PoolBuilder::seed`](crate::PoolBuilder::seed)): derive every
    /// random quantity from it, the index and the attempt, and a run can be repeated.
    pub seed: u64,
}

/// What a worker and its coordinator compare at the handshake: a worker serving a task
/// type of the same name but other input or output types is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Signature {
    /// [`Task::NAME`].
    pub name: String,
    /// The Rust type names of the task, its input and its output.
    pub types: [String; 3],
}

impl Signature {
    /// The signature of task type `T` in this build.
    pub fn of<T: Task>() -> Signature {
        Signature {
            name: T::NAME.to_string(),
            types: [
                std::any::type_name::<T>().to_string(),
                std::any::type_name::<T::Input>().to_string(),
                std::any::type_name::<T::Output>().to_string(),
            ],
        }
    }

    /// Why a worker serving `served` cannot run tasks of type `wanted`, if it cannot: the
    /// type is not among them, or is, as another build has it.
    pub fn refusal(served: &[Signature], wanted: &Signature) -> Option<String> {
        match served.iter().find(|s| s.name == wanted.name) {
            Some(theirs) => theirs
                .difference(wanted)
                .map(|difference| format!("{difference}: they are of other builds")),
            None => {
                let names: Vec<&str> = served.iter().map(|s| s.name.as_str()).collect();
                Some(format!(
                    "it serves the task types [{}], not `{}`",
                    names.join(", "),
                    wanted.name
                ))
            }
        }
    }

    /// How `self` (the worker's) differs from `wanted` (the coordinator's), if it does.
    pub fn difference(&self, wanted: &Signature) -> Option<String> {
        let what = ["task type", "input type", "output type"];
        self.types
            .iter()
            .zip(&wanted.types)
            .zip(what)
            .find(|((mine, theirs), _)| mine != theirs)
            .map(|((mine, theirs), what)| {
                format!(
                    "task `{}`: the worker's {what} is {mine}, this program's {theirs}",
                    self.name
                )
            })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ErrorKind;

    /// A byte that [`pattern`] never makes: what [`Scribble`] writes over its input.
    const SCRIBBLED: u8 = 0xFF;

    /// `len` bytes that [`Scribble`] can tell apart from its scribbles.
    pub(crate) fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Bulk bytes, encoded as a user's would be.
    #[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
    pub(crate) struct Bytes(#[serde(with = "crate::codec::bytes")] pub Vec<u8>);

    /// What [`Scribble`] returns: its input's bytes, and whether it was given the input
    /// ([`Task::run_owned`]) rather than lent it.
    #[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
    pub(crate) struct Echoed {
        pub bytes: Bytes,
        pub owned: bool,
    }

    /// An echo that uses up its input: when `fail_first`, its first attempt scribbles
    /// over the bytes and then fails transiently. Handed bytes it scribbled on, it fails
    /// `invalid_input`, so a retry shows whether it got the original back.
    #[derive(Serialize, serde::Deserialize)]
    pub(crate) struct Scribble {
        pub fail_first: bool,
    }

    impl Task for Scribble {
        const NAME: &'static str = "scribble";
        type Input = Bytes;
        type Output = Echoed;

        fn run(&self, input: &Bytes, attempt: &Attempt) -> Result<Echoed, TaskError> {
            let mut echoed = self.run_owned(input.clone(), attempt)?;
            echoed.owned = false;
            Ok(echoed)
        }

        fn run_owned(&self, mut input: Bytes, attempt: &Attempt) -> Result<Echoed, TaskError> {
            if input.0.contains(&SCRIBBLED) {
                return Err(TaskError::new(
                    ErrorKind::InvalidInput,
                    format!("attempt {}: handed a scribbled input", attempt.number),
                ));
            }
            if self.fail_first && attempt.number == 1 {
                input.0.fill(SCRIBBLED);
                return Err(TaskError::new(ErrorKind::Network, "scribbled, then failed"));
            }
            Ok(Echoed {
                bytes: input,
                owned: true,
            })
        }
    }

    #[test]
    fn a_retry_on_threads_or_in_sequence_gets_the_original_input() {
        use crate::{BackendKind, PoolBuilder};
        for backend in [BackendKind::Thread, BackendKind::Sequential] {
            let mut pool = PoolBuilder::new()
                .backend(backend)
                .workers(1)
                .retries(1)
                .backoff(std::time::Duration::ZERO)
                .build(Scribble { fail_first: true })
                .unwrap();
            let inputs = [0, 1, 100_000].map(|len| Bytes(pattern(len)));
            let records: Vec<_> = pool.map(inputs.clone()).collect();
            for (record, input) in records.iter().zip(&inputs) {
                let echoed = record
                    .result
                    .as_ref()
                    .unwrap_or_else(|err| panic!("{backend:?}, {} bytes: {err}", input.0.len()));
                assert_eq!(&echoed.bytes, input, "{backend:?}");
                // A worker thread is sent a copy of its batch, which it hands over.
                assert_eq!(echoed.owned, backend == BackendKind::Thread, "{backend:?}");
                assert_eq!(record.attempts, 2, "{backend:?}");
                assert_eq!(&record.input, input, "{backend:?}");
            }
            pool.shutdown();
        }
    }

    fn signature(name: &str, input: &str) -> Signature {
        Signature {
            name: name.into(),
            types: ["t".into(), input.into(), "o".into()],
        }
    }

    #[test]
    fn a_worker_is_refused_with_what_differs() {
        let served = [signature("hash", "PathBuf"), signature("count", "String")];
        assert_eq!(
            Signature::refusal(&served, &signature("hash", "PathBuf")),
            None
        );
        let other_build = Signature::refusal(&served, &signature("hash", "String"));
        assert_eq!(
            other_build.as_deref(),
            Some(
                "task `hash`: the worker's input type is PathBuf, this program's String: \
                 they are of other builds"
            )
        );
        let unknown = Signature::refusal(&served, &signature("resize", "Image"));
        assert_eq!(
            unknown.as_deref(),
            Some("it serves the task types [hash, count], not `resize`")
        );
    }

    #[test]
    #[cfg(feature = "workloads")]
    fn a_signature_names_the_types_of_this_build() {
        let sig = Signature::of::<crate::workload::Io>();
        assert_eq!(sig.name, "io");
        assert!(sig.types[1].ends_with("IoInput"), "{sig:?}");
    }
}
