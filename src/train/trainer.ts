// The training loop: three input pipelines feeding one ResNet-18 plan.
//
//   inr    decode each batch from the resident compressed dataset on the GPU
//   raw    read each batch from resident 8-bit pixels on the GPU (upper bound)
//   files  decode image files on the CPU each batch and upload them, as a
//          PyTorch DataLoader with one worker does
//
// The inr and raw pipelines add one dispatch in front of the training step,
// so a step is one submit that uploads nothing but uniform bytes. The loss is
// read back every `statsEvery` steps; test accuracy on original images once
// per epoch.

import { type Gpu, GpuDeviceLostError, GpuError, GpuOutOfMemoryError } from "../gpu/device.ts";
import { Plan } from "../gpu/kernel.ts";
import { decodeImage, resizeToSquare } from "../data/mod.ts";
import { type DecoderSource, InrDecoder } from "../inr/decode.ts";
import { readLossStats, resetLossStats } from "./layers.ts";
import { type BatchTransform, IMAGENET_MEAN, IMAGENET_STD, RawImages, transformSample } from "./raw_batch.ts";
import { ResNet18 } from "./resnet.ts";

/** Name of an input pipeline. */
export type InputKind = "inr" | "raw" | "files";

/** Training images in the form one pipeline reads. */
export type TrainInput =
  | { kind: "inr"; source: DecoderSource; count: number }
  | { kind: "raw"; images: Uint8Array; labels: ArrayLike<number>; resolution: number }
  | { kind: "files"; paths: string[]; labels: ArrayLike<number>; resolution: number };

/** Original test images, evaluated without augmentation. */
export interface TestSet {
  images: Uint8Array;
  labels: ArrayLike<number>;
  resolution: number;
}

/** Training settings. */
export interface TrainOptions {
  /** Passes over the training set. */
  epochs: number;
  /** Samples per step N; the last partial batch of an epoch is dropped. */
  batch: number;
  /** Peak learning rate of the cosine schedule. */
  learningRate: number;
  /** SGD momentum. Default: 0.9. */
  momentum?: number;
  /** Weight decay on convolution and linear weights. Default: 5e-4. */
  weightDecay?: number;
  /** ResNet first-stage channels (64 for the standard ResNet-18). */
  width: number;
  /** Classifier input side S in pixels. Default: the training resolution. */
  size?: number;
  /** Random-crop padding in pixels. Default: S / 8 rounded (4 at 32 px). */
  pad?: number;
  /** Random horizontal flips. Default: true. */
  flip?: boolean;
  /** Seed for weights, shuffling and augmentation. */
  seed: number;
  /** Steps between loss readbacks. Default: 10. */
  statsEvery?: number;
  /** Called after each loss readback. */
  onProgress?: (progress: TrainProgress) => void;
  /**
   * Called after each epoch's evaluation with the network and every record so
   * far, so the caller can save a checkpoint before the next epoch starts.
   */
  onEpoch?: (record: EpochRecord, state: { net: ResNet18; records: EpochRecord[] }) => void | Promise<void>;
  /** Finished epochs to continue from instead of starting at epoch 1. Default: none. */
  resume?: ResumeState;
}

/** Training state after some finished epochs, as a checkpoint stores it. */
export interface ResumeState {
  /** Records of the finished epochs, in order; their count is the number of epochs to skip. */
  records: EpochRecord[];
  /** Weights and running statistics by name, as `ResNet18.readTensors` returns them. */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
  /** SGD momentum buffer, as `ResNet18.readVelocity` returns it. */
  velocity: Float32Array;
}

/** Progress inside an epoch. */
export interface TrainProgress {
  epoch: number;
  step: number;
  stepsPerEpoch: number;
  /** Mean loss over the steps since the previous report. */
  loss: number;
  startedAt: number;
}

/** Figures of one finished epoch. */
export interface EpochRecord {
  epoch: number;
  /** Mean training loss over the epoch. */
  trainLoss: number;
  /** Top-1 accuracy on the augmented training batches. */
  trainAccuracy: number;
  /** Top-1 accuracy on the test set. */
  testAccuracy: number;
  /** Training images per second in this epoch, evaluation excluded. */
  imagesPerSecond: number;
  /** Learning rate of the epoch's last step (the cosine schedule decays per step). */
  lastLearningRate: number;
}

/** Result of `train`; `net` stays allocated until the caller destroys it. */
export interface TrainResult {
  epochs: EpochRecord[];
  testAccuracy: number;
  /** Mean training throughput over all epochs, evaluation excluded. */
  imagesPerSecond: number;
  input: InputKind;
  net: ResNet18;
}

/** Cosine decay from `peak` at step 0 to 0 at `total`. */
export function cosineLearningRate(peak: number, step: number, total: number): number {
  return 0.5 * peak * (1 + Math.cos(Math.PI * Math.min(step, total) / total));
}

/** Trains a ResNet-18 on `input` and evaluates it on `test` every epoch. */
export async function train(
  gpu: Gpu,
  data: { input: TrainInput; test: TestSet; classes: number },
  options: TrainOptions,
): Promise<TrainResult> {
  const { input, test } = data;
  const count = input.kind === "inr" ? input.count : input.labels.length;
  const resolution = input.kind === "inr" ? input.source.resolution : input.resolution;
  const size = options.size ?? resolution;
  const batch = options.batch;
  const stepsPerEpoch = Math.floor(count / batch);
  if (stepsPerEpoch < 1) {
    throw new RangeError(`The training set has ${count} images, fewer than one batch of ${batch}. Use a smaller --batch.`);
  }
  const transform: BatchTransform = {
    size,
    pad: options.pad ?? Math.round(size / 8),
    flip: options.flip ?? true,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    seed: options.seed,
  };
  const statsEvery = options.statsEvery ?? 10;

  // NOTE: unlike encode, training does not halve a batch that runs out of GPU
  // memory: the batch size changes batch-norm statistics and the SGD steps,
  // so a smaller batch would train a different network than the one requested.
  // An allocation that fails is reported with the sizes to lower instead.
  const net = await gpu.allocate(
    `a ResNet-18 of width ${options.width} for batches of ${batch} images`,
    () =>
      ResNet18.create(gpu, {
        classes: data.classes,
        inputSize: size,
        width: options.width,
        batch,
        momentum: options.momentum ?? 0.9,
        weightDecay: options.weightDecay ?? 5e-4,
      }),
  ).catch((error) => {
    if (!(error instanceof GpuOutOfMemoryError)) throw error;
    throw new GpuOutOfMemoryError(`a ResNet-18 of width ${options.width} for batches of ${batch} images`, {
      detail: `${error.detail}. Use a smaller --batch or --resnet-width`,
      bytes: error.bytes,
    });
  });
  const random = mulberry32(options.seed);
  net.initialize(random);
  const records: EpochRecord[] = [];
  try {
    if (options.resume) restore(net, options.resume, { epochs: options.epochs, count, random });
  } catch (error) {
    net.destroy();
    throw error;
  }
  records.push(...(options.resume?.records ?? []));

  // Set per epoch, so that a lost device names the epoch it interrupted.
  let running = "while preparing training";
  const indices = gpu.buffer(count * 4, "epoch permutation");
  const testImages = await RawImages.create(gpu, { images: test.images, labels: test.labels, resolution: test.resolution });
  const cleanup: (() => void)[] = [() => gpu.release(indices), () => testImages.destroy()];

  try {
    // The training plan: the pipeline's batch dispatch (if any), then the step.
    const plan = new Plan(gpu, "train step");
    cleanup.push(() => plan.destroy());
    let setBatch: (first: number, step: number) => void;
    let fillOnCpu: ((order: Uint32Array, first: number, step: number) => Promise<void>) | undefined;
    if (input.kind === "inr") {
      const decoder = await InrDecoder.create(gpu, input.source);
      cleanup.push(() => decoder.destroy());
      const recorded = decoder.decodeBatch(plan, { indices, output: net.input, labelsOut: net.labels }, { batch, ...transform });
      setBatch = (first, step) => recorded.update({ first, step });
    } else if (input.kind === "raw") {
      const raw = await RawImages.create(gpu, { images: input.images, labels: input.labels, resolution: input.resolution });
      cleanup.push(() => raw.destroy());
      const recorded = raw.recordBatch(plan, { indices, output: net.input, labelsOut: net.labels }, { batch, ...transform });
      setBatch = (first, step) => recorded.update({ first, step });
    } else {
      setBatch = () => {};
      fillOnCpu = filesPipeline(gpu, net, input, transform);
    }
    net.recordTrainStep(plan);

    const evalPlans = recordEvaluation(gpu, net, testImages, transform);
    cleanup.push(() => evalPlans.forEach((p) => p.plan.destroy()));

    const totalSteps = stepsPerEpoch * options.epochs;
    for (let epoch = records.length; epoch < options.epochs; epoch++) {
      running = `during epoch ${epoch + 1} of ${options.epochs}`;
      const order = permutation(count, random);
      gpu.write(indices, order);
      resetLossStats(gpu, net.trainStats);
      let epochLossSum = 0, epochSteps = 0, epochCorrect = 0, epochSamples = 0;
      const startedAt = performance.now();
      let learningRate = 0;
      for (let step = 0; step < stepsPerEpoch; step++) {
        const globalStep = epoch * stepsPerEpoch + step;
        learningRate = cosineLearningRate(options.learningRate, globalStep, totalSteps);
        net.setLearningRate(learningRate);
        setBatch(step * batch, globalStep);
        if (fillOnCpu) await fillOnCpu(order, step * batch, globalStep);
        plan.submit();
        if ((step + 1) % statsEvery === 0 || step === stepsPerEpoch - 1) {
          const stats = await readLossStats(gpu, net.trainStats);
          resetLossStats(gpu, net.trainStats);
          if (stats.invalidLabels > 0) throw new GpuError(`${stats.invalidLabels} training labels are out of range.`);
          if (!Number.isFinite(stats.meanLoss)) {
            throw new GpuError(`Training diverged at epoch ${epoch + 1}, step ${step + 1} (loss ${stats.meanLoss}). Lower --lr.`);
          }
          epochLossSum += stats.lossSum;
          epochSteps += stats.steps;
          epochCorrect += stats.correct;
          epochSamples += stats.samples;
          options.onProgress?.({ epoch, step: step + 1, stepsPerEpoch, loss: stats.meanLoss, startedAt });
        }
      }
      const seconds = (performance.now() - startedAt) / 1000;

      const testAccuracy = await evaluate(gpu, net, evalPlans);
      const record: EpochRecord = {
        epoch: epoch + 1,
        trainLoss: epochLossSum / epochSteps,
        trainAccuracy: epochCorrect / epochSamples,
        testAccuracy,
        imagesPerSecond: (stepsPerEpoch * batch) / seconds,
        lastLearningRate: learningRate,
      };
      records.push(record);
      await options.onEpoch?.(record, { net, records: [...records] });
    }
    // Derived from the records so that epochs restored from a checkpoint count too.
    const trainSeconds = records.reduce((sum, r) => sum + (stepsPerEpoch * batch) / r.imagesPerSecond, 0);
    return {
      epochs: records,
      testAccuracy: records[records.length - 1].testAccuracy,
      imagesPerSecond: (totalSteps * batch) / trainSeconds,
      input: input.kind,
      net,
    };
  } catch (error) {
    net.destroy();
    throw error instanceof GpuDeviceLostError ? error.during(running) : error;
  } finally {
    for (const release of cleanup.reverse()) release();
  }
}

// Loads a checkpoint's tensors and replays the random draws of the skipped
// epochs. The generator has just drawn the initial weights, and each epoch
// draws exactly one permutation, so re-drawing the skipped permutations leaves
// it where an uninterrupted run would be. Augmentation is keyed by the global
// step, not by this generator, so it needs no replay.
function restore(net: ResNet18, state: ResumeState, run: { epochs: number; count: number; random: () => number }): void {
  const finished = state.records.length;
  if (finished > run.epochs) {
    throw new RangeError(`The checkpoint has ${finished} finished epochs, more than the ${run.epochs} requested.`);
  }
  net.writeTensors(state.tensors);
  net.writeVelocity(state.velocity);
  for (let epoch = 0; epoch < finished; epoch++) permutation(run.count, run.random);
}

interface EvalPlan {
  plan: Plan;
  first: number;
  n: number;
}

// One plan per evaluation batch: test images are few, so recording each
// batch once is cheaper than updating a shared plan.
function recordEvaluation(gpu: Gpu, net: ResNet18, test: RawImages, transform: BatchTransform): EvalPlan[] {
  const batch = net.options.batch;
  const plans: EvalPlan[] = [];
  const evalTransform = { ...transform, pad: 0, flip: false };
  for (let first = 0; first < test.count; first += batch) {
    const n = Math.min(batch, test.count - first);
    const plan = new Plan(gpu, `eval ${first}`);
    const recorded = test.recordBatch(plan, { output: net.input, labelsOut: net.labels }, { ...evalTransform, batch: n });
    recorded.update({ first, step: 0 });
    net.recordEval(plan, n);
    plans.push({ plan, first, n });
  }
  return plans;
}

async function evaluate(gpu: Gpu, net: ResNet18, plans: EvalPlan[]): Promise<number> {
  resetLossStats(gpu, net.evalStats);
  for (const { plan } of plans) plan.submit();
  const stats = await readLossStats(gpu, net.evalStats);
  if (stats.invalidLabels > 0) throw new GpuError(`${stats.invalidLabels} test labels are out of range.`);
  return stats.correct / stats.samples;
}

// CPU decode, augmentation and upload of one batch per step.
function filesPipeline(gpu: Gpu, net: ResNet18, input: Extract<TrainInput, { kind: "files" }>, transform: BatchTransform) {
  const batch = net.options.batch;
  const s = transform.size;
  const output = new Float32Array(batch * 3 * s * s);
  const labels = new Uint32Array(batch);
  return async (order: Uint32Array, first: number, step: number) => {
    for (let j = 0; j < batch; j++) {
      const image = order[first + j];
      const path = input.paths[image];
      const decoded = await decodeImage(await Deno.readFile(path), path);
      const square = decoded.width === input.resolution && decoded.height === input.resolution
        ? decoded
        : resizeToSquare(decoded, { size: input.resolution });
      transformSample(square.rgb, { output, sample: j, resolution: input.resolution, step }, transform);
      labels[j] = input.labels[image];
    }
    gpu.write(net.input, output);
    gpu.write(net.labels, labels);
  };
}

/** Returns a seeded Fisher-Yates permutation of 0..count-1. */
export function permutation(count: number, random: () => number): Uint32Array {
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** Deterministic uniform random numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
