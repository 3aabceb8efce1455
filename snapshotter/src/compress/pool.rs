//! Compression workers: a fixed set of threads that turn members' tar bytes into compressed
//! bytes (or fetch them from a previous blob). Results come back through one reply channel per
//! member, which the encoder keeps in tar order; that is what makes the output independent of
//! which worker finished first.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::codec::MemberCodec;
use super::index::crc32;
use super::{CompressError, Compression, PreviousBlob};
use crate::digest::Digest;

/// One compressed member, with the buffers it used (handed back for reuse).
pub(crate) struct Member {
    /// The member's tar bytes.
    pub(crate) input: Vec<u8>,
    /// The member's compressed bytes.
    pub(crate) output: Vec<u8>,
    pub(crate) tar_digest: Digest,
    /// CRC-32 of `output`.
    pub(crate) crc32: u32,
    /// Whether `output` came from the previous blob.
    pub(crate) reused: bool,
    /// The member key the chunker computed.
    pub(crate) key: Option<Digest>,
}

/// Compress one member, or take its bytes from `previous` when it holds the same tar bytes.
pub(crate) fn encode_member(
    codec: &mut MemberCodec,
    compression: Compression,
    previous: Option<&PreviousBlob>,
    input: Vec<u8>,
    mut output: Vec<u8>,
    key: Option<Digest>,
) -> Result<Member, CompressError> {
    let tar_digest = Digest::of(&input);
    if let Some(previous) = previous
        && let Some(crc32) = previous.fetch(&tar_digest, input.len() as u64, &mut output)
    {
        return Ok(Member {
            input,
            output,
            tar_digest,
            crc32,
            reused: true,
            key,
        });
    }
    codec
        .encode(&input, &mut output)
        .map_err(|source| CompressError::Encode {
            compression,
            tar_bytes: input.len(),
            source,
        })?;
    let crc32 = crc32(&output);
    Ok(Member {
        input,
        output,
        tar_digest,
        crc32,
        reused: false,
        key,
    })
}

pub(crate) type Reply = Receiver<Result<Member, CompressError>>;

struct Job {
    input: Vec<u8>,
    output: Vec<u8>,
    key: Option<Digest>,
    reply: SyncSender<Result<Member, CompressError>>,
}

/// A fixed set of compression threads; dropping it lets them finish their jobs and joins them.
pub(crate) struct Pool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    pub(crate) fn new(
        threads: usize,
        compression: Compression,
        previous: Option<Arc<PreviousBlob>>,
    ) -> Result<Self, CompressError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let mut pool = Pool {
            jobs: Some(jobs),
            workers: Vec::with_capacity(threads),
        };
        for n in 0..threads {
            let queue = Arc::clone(&queue);
            let previous = previous.clone();
            let handle = std::thread::Builder::new()
                .name(format!("kiln-compress-{n}"))
                .spawn(move || work(&queue, compression, previous.as_deref()))
                .map_err(CompressError::Spawn)?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// Queue a member; its result arrives on the returned channel.
    pub(crate) fn submit(
        &self,
        input: Vec<u8>,
        output: Vec<u8>,
        key: Option<Digest>,
    ) -> Result<Reply, CompressError> {
        let (reply, result) = mpsc::sync_channel(1);
        let job = Job {
            input,
            output,
            key,
            reply,
        };
        self.jobs
            .as_ref()
            .ok_or(CompressError::WorkerLost)?
            .send(job)
            .map_err(|_| CompressError::WorkerLost)?;
        Ok(result)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for worker in self.workers.drain(..) {
            // A worker that panicked already dropped its reply channel, which the encoder
            // reports as `WorkerLost`; nothing more to say here.
            let _ = worker.join();
        }
    }
}

fn work(queue: &Mutex<Receiver<Job>>, compression: Compression, previous: Option<&PreviousBlob>) {
    let mut codec = MemberCodec::new(compression);
    loop {
        let job = {
            let Ok(queue) = queue.lock() else { return };
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let result = match &mut codec {
            Ok(codec) => {
                encode_member(codec, compression, previous, job.input, job.output, job.key)
            }
            Err(e) => Err(CompressError::Encode {
                compression,
                tar_bytes: job.input.len(),
                source: std::io::Error::new(e.kind(), e.to_string()),
            }),
        };
        // The encoder may have given up (an earlier error); then nobody waits for this result.
        let _ = job.reply.send(result);
    }
}
