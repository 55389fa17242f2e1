//! Runs detection requests: parallel pre-processing, a bounded queue, model worker threads.
//!
//! Admission is bounded in frames: a request takes one permit per frame, and when the permits
//! are gone the request is refused at once ([`EngineError::Busy`], answered 503 with
//! `Retry-After`) instead of queueing without limit. The permits are held by the request *and*
//! by each piece of its work (decoding, queued tensors, post-processing) and come back when the
//! last of them is done, so a client that gives up does not free room for more work while its
//! own is still running. Work whose client is gone is skipped: decoding stops before the next
//! chunk and a queued tensor is dropped instead of run (counted in
//! `inference_abandoned_frames_total`). Admitted frames are decoded and
//! letterboxed in parallel on the rayon pool, chunk by chunk, into batched tensors of at most
//! `chunk_size` frames; each tensor goes to the model worker threads (each owning one ONNX
//! Runtime session) as soon as it is ready. Post-processing runs on the rayon pool too, so a
//! worker goes on to the next tensor as soon as the model has run. Nothing here runs on the
//! async executor, so `/health` answers while the model is busy.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::inference_api::Detection;
use ort::session::Session;
use prometheus::{IntCounter, IntGauge};
use rayon::prelude::*;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::model::{self, ModelSpec};
use crate::postprocess::{self, Filter};
use crate::preprocess::{self, ImageError, Letterbox, RgbImage};

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Frames per model run (one batched tensor); a fixed-batch model overrides it.
    pub chunk_size: usize,
    /// Frames admitted at once, queued or running; beyond this requests get 503.
    pub queue_capacity: usize,
    /// Images over this many pixels are refused before decoding.
    pub max_image_pixels: u64,
}

/// One frame's outcome.
#[derive(Debug)]
pub enum FrameOutcome {
    Detected {
        width: u32,
        height: u32,
        detections: Vec<Detection>,
        /// This frame's share of its batched model run.
        inference: Duration,
    },
    Failed(ImageError),
}

/// Where a request's time went.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTimes {
    pub preprocess: Duration,
    /// Longest wait of any chunk for a worker.
    pub queue: Duration,
    pub inference: Duration,
    pub postprocess: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "the model queue is full ({queued} frames queued or running, capacity {capacity}); retry shortly"
    )]
    Busy { queued: usize, capacity: usize },
    #[error("request of {frames} frames exceeds the queue capacity of {capacity} frames")]
    TooManyForQueue { frames: usize, capacity: usize },
    #[error("model failed: {0}")]
    Model(String),
    #[error("the model workers have stopped")]
    Stopped,
}

struct Job {
    /// Held until the chunk's reply is sent or dropped.
    admitted: Arc<Admitted>,
    input: Vec<f32>,
    letterboxes: Vec<Letterbox>,
    filter: Arc<Filter>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<ChunkOutput, String>>,
}

struct ChunkOutput {
    /// The input tensor, back for reuse.
    input: Vec<f32>,
    detections: Vec<Vec<Detection>>,
    queue: Duration,
    inference: Duration,
    postprocess: Duration,
}

/// The batching front of the model workers. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    pub spec: Arc<ModelSpec>,
    settings: EngineSettings,
    /// One permit per frame that may be admitted; see the module docs.
    admission: Arc<Semaphore>,
    metrics: EngineMetrics,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// Input tensors handed back by the workers, reused so that a request does not fault in
    /// and zero ~40 MB of fresh memory per chunk.
    tensors: TensorPool,
}

/// Most tensors kept for reuse; more in flight at once are simply freed when they come back.
const POOLED_TENSORS: usize = 8;

#[derive(Debug, Clone, Default)]
struct TensorPool(Arc<Mutex<Vec<Vec<f32>>>>);

impl TensorPool {
    fn take(&self, len: usize) -> Vec<f32> {
        let reused = self.0.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut buf = reused.unwrap_or_default();
        // letterbox_into writes every element, so stale contents are fine; only growth zeroes
        buf.resize(len, 0.0);
        buf
    }

    fn give_back(&self, buf: Vec<f32>) {
        let mut pool = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOLED_TENSORS {
            pool.push(buf);
        }
    }
}

/// What the engine reports.
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    /// Published copy of [`Engine::queue_depth`], updated on every admission and release.
    pub queue_depth: IntGauge,
    /// Frames whose model run was skipped because their client had gone.
    pub abandoned_frames: IntCounter,
}

impl Engine {
    /// Starts one worker thread per session. All sessions must be of the same model.
    pub fn start(
        spec: ModelSpec,
        sessions: Vec<Session>,
        mut settings: EngineSettings,
        metrics: EngineMetrics,
    ) -> Self {
        if let Some(fixed) = spec.fixed_batch {
            settings.chunk_size = fixed;
        }
        settings.chunk_size = settings.chunk_size.max(1);
        let spec = Arc::new(spec);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for (i, session) in sessions.into_iter().enumerate() {
            let rx = Arc::clone(&rx);
            let spec = Arc::clone(&spec);
            let abandoned = metrics.abandoned_frames.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("model-{i}"))
                .spawn(move || worker(session, &spec, &rx, &abandoned));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a model worker thread");
            }
        }
        Self {
            spec,
            admission: Arc::new(Semaphore::new(settings.queue_capacity)),
            metrics,
            settings,
            jobs: Mutex::new(Some(tx)),
            tensors: TensorPool::default(),
        }
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Frames admitted and not yet answered.
    pub fn queue_depth(&self) -> usize {
        admitted_frames(&self.admission, self.settings.queue_capacity)
    }

    /// Runs the model once on a blank batch so the first request does not pay for lazy
    /// initialisation inside ONNX Runtime.
    pub async fn warm_up(&self) -> Result<(), EngineError> {
        let blank = RgbImage {
            width: 64,
            height: 64,
            pixels: vec![114; 64 * 64 * 3],
        };
        let filter = Arc::new(Filter {
            conf: 1.0,
            iou: 0.45,
            max_det: 1,
            allowed: None,
        });
        let (pool, spec) = (self.tensors.clone(), Arc::clone(&self.spec));
        let (input, lbs) = run_blocking(move || tensor_of(&pool, &spec, &[&blank]))
            .await?
            .map_err(|e| EngineError::Model(e.to_string()))?;
        let admitted = self.admit(1)?;
        let out = self
            .enqueue(admitted, input, lbs, filter)?
            .await
            .map_err(|_| EngineError::Stopped)?
            .map_err(EngineError::Model)?;
        self.tensors.give_back(out.input);
        Ok(())
    }

    /// Detects objects in every frame, in order. Frames that are not valid images get
    /// [`FrameOutcome::Failed`]; the others are unaffected.
    pub async fn detect(
        &self,
        frames: Vec<Bytes>,
        filter: Filter,
    ) -> Result<(Vec<FrameOutcome>, StageTimes), EngineError> {
        let n = frames.len();
        let capacity = self.settings.queue_capacity;
        if n > capacity {
            return Err(EngineError::TooManyForQueue {
                frames: n,
                capacity,
            });
        }
        let admitted = self.admit(n)?;

        // The chunks are decoded and letterboxed one after the other, each with every core of
        // the pool, and each is handed to the model as soon as it is ready: the model starts on
        // the first chunk while the others are still being decoded, instead of waiting for the
        // whole request.
        let start = Instant::now();
        let (max_pixels, chunk) = (self.settings.max_image_pixels, self.settings.chunk_size);
        let chunks = n.div_ceil(chunk);
        let (ready, mut prepared) = tokio::sync::mpsc::unbounded_channel();
        let (pool, spec) = (self.tensors.clone(), Arc::clone(&self.spec));
        let decoding = Arc::clone(&admitted);
        rayon::spawn(move || {
            let _admitted = decoding;
            for group in frames.chunks(chunk) {
                if ready.is_closed() {
                    return; // the request was dropped: decode no more of it
                }
                // a request dropped meanwhile is seen before the next chunk
                let _ = ready.send(prepare(group, max_pixels, &pool, &spec));
            }
        });
        let filter = Arc::new(filter);
        let mut times = StageTimes::default();
        let mut submitted = Vec::with_capacity(chunks);
        for _ in 0..chunks {
            let Prepared { sizes, tensor } = prepared.recv().await.ok_or(EngineError::Stopped)?;
            let reply = match tensor {
                Some(Ok((input, lbs))) => {
                    Some(self.enqueue(Arc::clone(&admitted), input, lbs, Arc::clone(&filter))?)
                }
                Some(Err(e)) => return Err(EngineError::Model(e.to_string())),
                None => None, // no frame of this chunk could be decoded
            };
            submitted.push((sizes, reply));
        }
        times.preprocess = start.elapsed();

        let mut outcomes = Vec::with_capacity(n);
        for (sizes, reply) in submitted {
            // (detections, this frame's share of its batched run) per decoded frame, in order
            let mut found = Vec::new();
            if let Some(reply) = reply {
                let mut out = reply
                    .await
                    .map_err(|_| EngineError::Stopped)?
                    .map_err(EngineError::Model)?;
                self.tensors.give_back(std::mem::take(&mut out.input));
                times.queue = times.queue.max(out.queue);
                times.inference += out.inference;
                times.postprocess += out.postprocess;
                let share = out.inference / out.detections.len().max(1) as u32;
                found = out.detections.into_iter().map(|d| (d, share)).collect();
            }
            let mut found = found.into_iter();
            outcomes.extend(sizes.into_iter().map(|d| match d {
                Ok((width, height)) => {
                    let (detections, inference) = found.next().unwrap_or_default();
                    FrameOutcome::Detected {
                        width,
                        height,
                        detections,
                        inference,
                    }
                }
                Err(e) => FrameOutcome::Failed(e),
            }));
        }
        Ok((outcomes, times))
    }

    /// Takes `frames` permits, or refuses at once when they are not free.
    fn admit(&self, frames: usize) -> Result<Arc<Admitted>, EngineError> {
        let permits = Arc::clone(&self.admission)
            .try_acquire_many_owned(frames as u32)
            .map_err(|_| EngineError::Busy {
                queued: self.queue_depth(),
                capacity: self.settings.queue_capacity,
            })?;
        let admitted = Admitted {
            permits: Some(permits),
            admission: Arc::clone(&self.admission),
            capacity: self.settings.queue_capacity,
            gauge: self.metrics.queue_depth.clone(),
        };
        admitted.publish();
        Ok(Arc::new(admitted))
    }

    /// Queues one tensor for the model workers; the receiver gets its output.
    fn enqueue(
        &self,
        admitted: Arc<Admitted>,
        input: Vec<f32>,
        letterboxes: Vec<Letterbox>,
        filter: Arc<Filter>,
    ) -> Result<oneshot::Receiver<Result<ChunkOutput, String>>, EngineError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            admitted,
            input,
            letterboxes,
            filter,
            enqueued: Instant::now(),
            reply,
        };
        let guard = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let tx = guard.as_ref().ok_or(EngineError::Stopped)?;
        tx.send(job).map_err(|_| EngineError::Stopped)?;
        Ok(rx)
    }

    /// Stops accepting work; workers exit once the queue is drained.
    pub fn stop(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Frames admitted for one request, shared by the request and every piece of its work.
/// Dropping the last share, however the request ends, releases them and publishes the new
/// queue depth.
struct Admitted {
    permits: Option<OwnedSemaphorePermit>,
    admission: Arc<Semaphore>,
    capacity: usize,
    gauge: IntGauge,
}

impl Admitted {
    fn publish(&self) {
        let depth = admitted_frames(&self.admission, self.capacity);
        self.gauge.set(depth as i64);
    }
}

/// Frames holding permits of `admission`, out of `capacity`.
fn admitted_frames(admission: &Semaphore, capacity: usize) -> usize {
    capacity - admission.available_permits()
}

impl Drop for Admitted {
    fn drop(&mut self) {
        drop(self.permits.take());
        self.publish();
    }
}

/// Letterboxes `images` into one batched `n x 3 x h x w` tensor, in parallel. A model with a
/// fixed batch gets a tensor of exactly that many images: the spare slots keep whatever the
/// buffer held, and their outputs are never read (post-processing pairs outputs with
/// `images`' letterboxes only).
fn tensor_of(
    pool: &TensorPool,
    spec: &ModelSpec,
    images: &[&RgbImage],
) -> Result<(Vec<f32>, Vec<Letterbox>), ImageError> {
    let (w, h) = (spec.input_width, spec.input_height);
    let per_image = 3 * (w * h) as usize;
    let slots = spec.fixed_batch.unwrap_or(images.len()).max(images.len());
    let mut input = pool.take(per_image * slots);
    let lbs = input
        .par_chunks_mut(per_image)
        .zip(images.par_iter())
        .map(|(slot, img)| preprocess::letterbox_into(img, w, h, slot))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((input, lbs))
}

/// A batched input tensor and where each of its images sits in it.
type Tensor = (Vec<f32>, Vec<Letterbox>);

/// One chunk of a request, decoded and letterboxed.
struct Prepared {
    /// Each frame's size, or why it could not be decoded, in order.
    sizes: Vec<Result<(u32, u32), ImageError>>,
    /// The batched tensor of the frames that decoded; `None` when none did.
    tensor: Option<Result<Tensor, ImageError>>,
}

/// Decodes `frames` in parallel and letterboxes the ones that decoded into one tensor.
fn prepare(frames: &[Bytes], max_pixels: u64, pool: &TensorPool, spec: &ModelSpec) -> Prepared {
    let decoded: Vec<Result<RgbImage, ImageError>> = frames
        .par_iter()
        .map(|b| preprocess::decode(b, max_pixels))
        .collect();
    let ok: Vec<&RgbImage> = decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
    let tensor = (!ok.is_empty()).then(|| tensor_of(pool, spec, &ok));
    let sizes = decoded
        .into_iter()
        .map(|d| d.map(|img| (img.width, img.height)))
        .collect();
    Prepared { sizes, tensor }
}

/// Runs CPU-bound work on the rayon pool and awaits it without blocking the executor.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EngineError> {
    let (tx, rx) = oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.map_err(|_| EngineError::Stopped)
}

fn worker(
    mut session: Session,
    spec: &Arc<ModelSpec>,
    jobs: &Mutex<mpsc::Receiver<Job>>,
    abandoned: &IntCounter,
) {
    let per_image = 3 * (spec.input_width * spec.input_height) as usize;
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return, // engine stopped and queue drained
            }
        };
        if job.reply.is_closed() {
            // The request is gone (its client gave up): running it would only delay the
            // requests behind it.
            abandoned.inc_by(job.letterboxes.len() as u64);
            continue;
        }
        let queue = job.enqueued.elapsed();
        let started = Instant::now();
        // sized by `tensor_of`: at most `chunk_size` images, or exactly the fixed batch
        let output = model::run(&mut session, spec, &job.input, job.input.len() / per_image);
        let inference = started.elapsed();
        let Job {
            admitted,
            input,
            letterboxes,
            filter,
            reply,
            ..
        } = job;
        let output = match output {
            Ok(output) => output,
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
                continue;
            }
        };
        // Post-processing streams through ~2.7 MB of output per frame (about 2.5% of the
        // model's time on this chunk); on the pool, the model starts the next chunk meanwhile.
        let spec = Arc::clone(spec);
        rayon::spawn(move || {
            let _admitted = admitted;
            let started = Instant::now();
            let detections = postprocess_chunk(&output, &spec, &letterboxes, &filter);
            let _ = reply.send(Ok(ChunkOutput {
                input,
                detections,
                queue,
                inference,
                postprocess: started.elapsed(),
            }));
        });
    }
}

/// Detections of each real frame of a chunk; the outputs of a fixed batch's spare slots have
/// no letterbox and are never read.
fn postprocess_chunk(
    output: &model::ModelOutput,
    spec: &ModelSpec,
    letterboxes: &[Letterbox],
    filter: &Filter,
) -> Vec<Vec<Detection>> {
    let per_output = (4 + spec.class_names.len()) * spec.anchors;
    output
        .data()
        .par_chunks_exact(per_output)
        .zip(letterboxes.par_iter())
        .map(|(o, lb)| postprocess::detections(o, spec.anchors, &spec.class_names, lb, filter))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fixed_batch: Option<usize>) -> ModelSpec {
        ModelSpec {
            name: "m".into(),
            input_name: "images".into(),
            output_name: "output0".into(),
            input_width: 32,
            input_height: 32,
            fixed_batch,
            anchors: 21,
            class_names: vec!["a".into()],
        }
    }

    fn image() -> RgbImage {
        RgbImage {
            width: 8,
            height: 4,
            pixels: vec![200; 8 * 4 * 3],
        }
    }

    #[test]
    fn a_dynamic_batch_tensor_holds_exactly_the_frames() {
        let (img, per_image) = (image(), 3 * 32 * 32);
        let (input, lbs) =
            tensor_of(&TensorPool::default(), &spec(None), &[&img, &img, &img]).expect("tensor");
        assert_eq!((input.len(), lbs.len()), (3 * per_image, 3));
    }

    #[test]
    fn a_fixed_batch_tensor_is_padded_to_the_models_batch() {
        let (img, per_image) = (image(), 3 * 32 * 32);
        let (input, lbs) =
            tensor_of(&TensorPool::default(), &spec(Some(4)), &[&img]).expect("tensor");
        assert_eq!(
            input.len(),
            4 * per_image,
            "ONNX Runtime refuses any other batch size"
        );
        assert_eq!(lbs.len(), 1, "only the real frame is post-processed");
    }
}
