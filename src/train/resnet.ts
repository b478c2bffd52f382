// ResNet-18 on the GPU: parameters, activations and the recorded training
// and evaluation plans.
//
// The network is torchvision's resnet18 with its tensor names, so exported
// weights map one to one. Inputs of 64 px or less use the CIFAR stem (3x3
// stride-1 convolution, no max pool). Larger inputs use the ImageNet stem
// (7x7 stride-2 convolution and 3x3 stride-2 max pool). `width` scales every
// stage (64 in the standard network) for machines without a GPU.
//
// One training step is one plan: forward with batch statistics, softmax
// cross-entropy, backward, SGD. The input pipeline writes `input` and
// `labels` before it in the same submit; the host reads the loss statistics
// every few steps only.

import type { Gpu } from "../gpu/device.ts";
import type { Binding, Plan } from "../gpu/kernel.ts";
import { type ConvShape, ConvKernels, convOutputSize } from "./conv.ts";
import { buildDecayMask, LayerKernels, LOSS_STATS_BYTES, maxPoolOutputSize, type SgdDispatch } from "./layers.ts";
import { Arena, type TensorSlot } from "./params.ts";

/** Settings of the classifier. */
export interface ResNetOptions {
  /** Classes M. */
  classes: number;
  /** Input side S in pixels (inputs are S x S RGB). */
  inputSize: number;
  /** Channels of the first stage; 64 in the standard ResNet-18. Default: 64. */
  width?: number;
  /** Training batch size N. */
  batch: number;
  /** SGD momentum. Default: 0.9. */
  momentum?: number;
  /** L2 weight decay on convolution and linear weights. Default: 5e-4. */
  weightDecay?: number;
}

/** An activation tensor [N][C][H][W] and its gradient buffer. */
interface Activation {
  buffer: GPUBuffer;
  grad: GPUBuffer;
  c: number;
  h: number;
  w: number;
}

interface BatchNormSlots {
  gamma: TensorSlot;
  beta: TensorSlot;
  runningMean: TensorSlot;
  runningVar: TensorSlot;
  /** Offsets of the saved batch mean and inverse std in the `saved` buffer, in floats. */
  mean: number;
  invStd: number;
}

type Step = (plan: Plan) => void;

/** Largest input side that uses the CIFAR stem. */
export const SMALL_INPUT_MAX = 64;

/** A ResNet-18 with its GPU buffers and plans for one batch size. */
export class ResNet18 {
  readonly gpu: Gpu;
  readonly options: Required<ResNetOptions>;
  readonly params = new Arena();
  /** Running statistics of batch norm; not trained, but saved with the model. */
  readonly state = new Arena();
  /** Input [N][3][S][S] f32, written by the input pipeline. */
  readonly input: GPUBuffer;
  /** Labels [N] u32, written by the input pipeline. */
  readonly labels: GPUBuffer;
  /** Loss statistics accumulated over training steps (see `readLossStats`). */
  readonly trainStats: GPUBuffer;
  /** Correct-prediction statistics accumulated over evaluation batches. */
  readonly evalStats: GPUBuffer;
  weights!: GPUBuffer;
  stateBuffer!: GPUBuffer;
  #grads!: GPUBuffer;
  #velocity!: GPUBuffer;
  #mask!: GPUBuffer;
  #saved!: GPUBuffer;
  #savedFloats = 0;
  #scratch!: GPUBuffer;
  #scratchBytes = 4;
  #conv: ConvKernels;
  #layers: LayerKernels;
  #sgd?: SgdDispatch;
  #buffers: GPUBuffer[] = [];
  // Recorded ops: forward for training, forward for evaluation (given a
  // batch size), backward. Built once by `#build`.
  #forwardTrain: Step[] = [];
  #forwardEval: ((plan: Plan, n: number) => void)[] = [];
  #backward: Step[] = [];

  private constructor(gpu: Gpu, options: Required<ResNetOptions>, kernels: { conv: ConvKernels; layers: LayerKernels }) {
    this.gpu = gpu;
    this.options = options;
    this.#conv = kernels.conv;
    this.#layers = kernels.layers;
    const { batch, inputSize, classes } = options;
    this.input = this.#tensor(batch * 3 * inputSize * inputSize, "input");
    this.labels = this.#tensor(batch, "labels");
    this.trainStats = this.#tensor(LOSS_STATS_BYTES / 4, "train loss stats");
    this.evalStats = this.#tensor(LOSS_STATS_BYTES / 4, "eval stats");
    if (classes < 2) throw new RangeError(`A classifier needs at least 2 classes, got ${classes}.`);
  }

  /** Compiles the kernels and allocates every buffer for `options`. */
  static async create(gpu: Gpu, options: ResNetOptions): Promise<ResNet18> {
    const full: Required<ResNetOptions> = { width: 64, momentum: 0.9, weightDecay: 5e-4, ...options };
    for (const [name, value] of Object.entries({ batch: full.batch, inputSize: full.inputSize, width: full.width })) {
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`ResNet ${name} must be a positive integer, got ${value}.`);
    }
    if (full.inputSize < 8) throw new RangeError(`ResNet input side must be at least 8 pixels, got ${full.inputSize}.`);
    const [conv, layers] = await Promise.all([ConvKernels.create(gpu), LayerKernels.create(gpu)]);
    const net = new ResNet18(gpu, full, { conv, layers });
    net.#build();
    return net;
  }

  #tensor(floats: number, label: string): GPUBuffer {
    const buffer = this.gpu.buffer(floats * 4, label);
    this.#buffers.push(buffer);
    return buffer;
  }

  #activation(c: number, h: number, w: number, label: string): Activation {
    const floats = this.options.batch * c * h * w;
    return { buffer: this.#tensor(floats, label), grad: this.#tensor(floats, `${label} grad`), c, h, w };
  }

  #savedSlot(c: number): number {
    const offset = this.#savedFloats;
    this.#savedFloats += Math.ceil(c / 64) * 64;
    return offset;
  }

  // Declares a convolution and returns its forward/backward recorders.
  #convLayer(name: string, x: Activation, spec: { k: number; kernel: number; stride: number; pad: number }) {
    const weight = this.params.add(`${name}.weight`, [spec.k, x.c, spec.kernel, spec.kernel], { decay: true, init: "kaiming" });
    const shapeFor = (n: number): ConvShape => ({ n, c: x.c, h: x.h, w: x.w, ...spec });
    const out = convOutputSize(shapeFor(1));
    const y = this.#activation(spec.k, out.h, out.w, name);
    this.#scratchBytes = Math.max(this.#scratchBytes, this.#conv.scratchBytes(shapeFor(this.options.batch)));
    const forward = (plan: Plan, n: number) =>
      this.#conv.forward(plan, { x: x.buffer, w: Arena.bind(this.weights, weight), y: y.buffer }, shapeFor(n));
    const backward = (plan: Plan, needInputGrad: boolean) => {
      const shape = shapeFor(this.options.batch);
      const dw = Arena.bind(this.#grads, weight);
      this.#conv.backwardWeight(plan, { x: x.buffer, dy: y.grad, dw, scratch: this.#scratch }, shape);
      if (needInputGrad) this.#conv.backwardData(plan, { dy: y.grad, w: Arena.bind(this.weights, weight), dx: x.grad }, shape);
    };
    return { y, forward, backward };
  }

  // Declares a batch norm (with optional fused ReLU) writing a new activation.
  #batchNormLayer(name: string, x: Activation, relu: boolean) {
    const c = x.c;
    const slots: BatchNormSlots = {
      gamma: this.params.add(`${name}.weight`, [c], { decay: false, init: "ones" }),
      beta: this.params.add(`${name}.bias`, [c], { decay: false, init: "zeros" }),
      runningMean: this.state.add(`${name}.running_mean`, [c], { decay: false, init: "zeros" }),
      runningVar: this.state.add(`${name}.running_var`, [c], { decay: false, init: "ones" }),
      mean: this.#savedSlot(c),
      invStd: this.#savedSlot(c),
    };
    const y = this.#activation(c, x.h, x.w, `${name} out`);
    const shapeFor = (n: number) => ({ n, c, h: x.h, w: x.w, relu });
    const saved = (offset: number): Binding => ({ buffer: this.#saved, offset: offset * 4, size: c * 4 });
    const common = () => ({
      gamma: Arena.bind(this.weights, slots.gamma),
      beta: Arena.bind(this.weights, slots.beta),
    });
    this.#forwardTrain.push((plan) =>
      this.#layers.batchNorm.forward(plan, {
        x: x.buffer,
        y: y.buffer,
        ...common(),
        mean: saved(slots.mean),
        invStd: saved(slots.invStd),
        runningMean: Arena.bind(this.stateBuffer, slots.runningMean),
        runningVar: Arena.bind(this.stateBuffer, slots.runningVar),
      }, shapeFor(this.options.batch))
    );
    this.#forwardEval.push((plan, n) =>
      this.#layers.batchNorm.evalForward(plan, {
        x: x.buffer,
        y: y.buffer,
        ...common(),
        runningMean: Arena.bind(this.stateBuffer, slots.runningMean),
        runningVar: Arena.bind(this.stateBuffer, slots.runningVar),
      }, shapeFor(n))
    );
    const backward: Step = (plan) =>
      this.#layers.batchNorm.backward(plan, {
        x: x.buffer,
        dy: y.grad,
        ...common(),
        mean: saved(slots.mean),
        invStd: saved(slots.invStd),
        dx: x.grad,
        dgamma: Arena.bind(this.#grads, slots.gamma),
        dbeta: Arena.bind(this.#grads, slots.beta),
      }, shapeFor(this.options.batch));
    return { y, backward };
  }

  // conv -> batch norm (-> ReLU); records forward steps and returns the backward.
  #convBn(name: string, bnName: string, x: Activation, spec: { k: number; kernel: number; stride: number; pad: number }, relu: boolean, inputGrad: boolean) {
    const conv = this.#convLayer(name, x, spec);
    this.#forwardTrain.push((plan) => conv.forward(plan, this.options.batch));
    this.#forwardEval.push((plan, n) => conv.forward(plan, n));
    const bn = this.#batchNormLayer(bnName, conv.y, relu);
    const backward: Step = (plan) => {
      bn.backward(plan);
      conv.backward(plan, inputGrad);
    };
    return { y: bn.y, backward };
  }

  #basicBlock(name: string, x: Activation, channels: number, stride: number): Activation {
    const a = this.#convBn(`${name}.conv1`, `${name}.bn1`, x, { k: channels, kernel: 3, stride, pad: 1 }, true, true);
    const b = this.#convBn(`${name}.conv2`, `${name}.bn2`, a.y, { k: channels, kernel: 3, stride: 1, pad: 1 }, false, true);
    // The downsample shortcut writes its input gradient into a buffer of its
    // own, which is then added to the main path's gradient of x.
    const needsDownsample = stride !== 1 || x.c !== channels;
    const shortcutGrad = needsDownsample ? this.#tensor(this.options.batch * x.c * x.h * x.w, `${name} shortcut dx`) : undefined;
    const downsample = needsDownsample
      ? this.#convBn(`${name}.downsample.0`, `${name}.downsample.1`, { ...x, grad: shortcutGrad! }, { k: channels, kernel: 1, stride, pad: 0 }, false, true)
      : undefined;
    const shortcut = downsample ? downsample.y : x;
    const out = this.#activation(channels, b.y.h, b.y.w, `${name} out`);
    const count = (n: number) => n * channels * out.h * out.w;
    const join = (plan: Plan, n: number) =>
      this.#layers.elementwise.add(plan, { a: b.y.buffer, b: shortcut.buffer, y: out.buffer }, { count: count(n), relu: true });
    this.#forwardTrain.push((plan) => join(plan, this.options.batch));
    this.#forwardEval.push(join);

    this.#backward.push((plan) => {
      const n = this.options.batch;
      // The ReLU-masked gradient of the join feeds both the main path and the shortcut.
      this.#layers.elementwise.reluBackward(plan, { activation: out.buffer, dy: out.grad, dx: b.y.grad }, { count: count(n) });
      if (downsample) {
        this.#layers.elementwise.copy(plan, { src: b.y.grad, dst: downsample.y.grad }, { count: count(n) });
      }
      b.backward(plan);
      a.backward(plan); // overwrites x.grad with the main path's gradient
      const inputCount = n * x.c * x.h * x.w;
      if (downsample) {
        downsample.backward(plan); // writes its input gradient into shortcutGrad
        this.#layers.elementwise.addInto(plan, { src: shortcutGrad!, dst: x.grad }, { count: inputCount });
      } else {
        this.#layers.elementwise.addInto(plan, { src: b.y.grad, dst: x.grad }, { count: inputCount });
      }
    });
    return out;
  }

  #build(): void {
    // The recorders below only declare tensors; they read the weight, grad
    // and state buffers when a plan is recorded, after #allocateParameters.
    const { inputSize, width, classes, batch } = this.options;
    const input: Activation = { buffer: this.input, grad: this.#tensor(1, "unused input grad"), c: 3, h: inputSize, w: inputSize };
    let x: Activation;
    const stemBackward: Step[] = [];
    if (inputSize <= SMALL_INPUT_MAX) {
      const stem = this.#convBn("conv1", "bn1", input, { k: width, kernel: 3, stride: 1, pad: 1 }, true, false);
      stemBackward.push(stem.backward);
      x = stem.y;
    } else {
      const stem = this.#convBn("conv1", "bn1", input, { k: width, kernel: 7, stride: 2, pad: 3 }, true, false);
      const poolShape = (n: number) => ({ n, c: width, h: stem.y.h, w: stem.y.w });
      const size = maxPoolOutputSize(poolShape(1));
      const pooled = this.#activation(width, size.ho, size.wo, "maxpool");
      const argmax = this.#tensor(batch * width * size.ho * size.wo, "maxpool argmax");
      const pool = (plan: Plan, n: number) =>
        this.#layers.pool.maxPoolForward(plan, { x: stem.y.buffer, y: pooled.buffer, argmax }, poolShape(n));
      this.#forwardTrain.push((plan) => pool(plan, batch));
      this.#forwardEval.push(pool);
      stemBackward.push(stem.backward);
      stemBackward.push((plan) => this.#layers.pool.maxPoolBackward(plan, { argmax, dy: pooled.grad, dx: stem.y.grad }, poolShape(batch)));
      x = pooled;
    }
    // #backward is kept in forward order and replayed in reverse.
    this.#backward.push(...stemBackward);

    const stages = [width, width * 2, width * 4, width * 8];
    stages.forEach((channels, stage) => {
      for (let block = 0; block < 2; block++) {
        const stride = stage > 0 && block === 0 ? 2 : 1;
        x = this.#basicBlock(`layer${stage + 1}.${block}`, x, channels, stride);
      }
    });
    const features = x;

    // Head: global average pool, linear layer, loss.
    const c = features.c;
    const pooled = this.#activation(c, 1, 1, "avgpool");
    const logits = this.#activation(classes, 1, 1, "logits");
    const sampleLoss = this.#tensor(batch, "sample loss");
    const fcWeight = this.params.add("fc.weight", [classes, c], { decay: true, init: "linear" });
    const fcBias = this.params.add("fc.bias", [classes], { decay: false, init: "linear", fanIn: c });
    const poolShape = (n: number) => ({ n, c, h: features.h, w: features.w });
    const head = (plan: Plan, n: number) => {
      this.#layers.pool.avgPoolForward(plan, { x: features.buffer, y: pooled.buffer }, poolShape(n));
      this.#layers.linear.forward(plan, {
        x: pooled.buffer,
        weight: Arena.bind(this.weights, fcWeight),
        bias: Arena.bind(this.weights, fcBias),
        y: logits.buffer,
      }, { n, c, m: classes });
    };
    this.#forwardTrain.push((plan) => {
      head(plan, batch);
      this.#layers.loss.crossEntropy(plan, {
        logits: logits.buffer,
        labels: this.labels,
        dlogits: logits.grad,
        sampleLoss,
        stats: this.trainStats,
      }, { n: batch, m: classes });
    });
    this.#forwardEval.push((plan, n) => {
      head(plan, n);
      this.#layers.loss.crossEntropyEval(plan, { logits: logits.buffer, labels: this.labels, stats: this.evalStats }, { n, m: classes });
    });
    const headBackward: Step = (plan) => {
      this.#layers.linear.backward(plan, {
        x: pooled.buffer,
        weight: Arena.bind(this.weights, fcWeight),
        dy: logits.grad,
        dx: pooled.grad,
        dweight: Arena.bind(this.#grads, fcWeight),
        dbias: Arena.bind(this.#grads, fcBias),
      }, { n: batch, c, m: classes });
      this.#layers.pool.avgPoolBackward(plan, { dy: pooled.grad, dx: features.grad }, poolShape(batch));
    };
    this.#backward.push(headBackward);
    this.#allocateParameters();
  }

  #allocateParameters(): void {
    const floats = this.params.size;
    this.weights = this.#tensor(floats, "resnet weights");
    this.#grads = this.#tensor(floats, "resnet grads");
    this.#velocity = this.#tensor(floats, "resnet velocity");
    this.stateBuffer = this.#tensor(this.state.size, "resnet running stats");
    this.#saved = this.#tensor(Math.max(64, this.#savedFloats), "batch-norm saved stats");
    this.#scratch = this.#tensor(this.#scratchBytes / 4, "conv scratch");
    const noDecay = this.params.slots.filter((s) => !s.decay).map((s) => ({ offset: s.offset, length: s.size }));
    // Alignment padding between slots is never read; leaving it decayed is harmless.
    this.#mask = this.gpu.buffer(Math.ceil(floats / 32) * 4, "decay mask", buildDecayMask({ count: floats, noDecay }));
    this.#buffers.push(this.#mask);
  }

  /** Writes fresh initial weights (seeded), zero momentum and default running statistics. */
  initialize(random: () => number): void {
    this.gpu.write(this.weights, this.params.initialValues(random));
    this.gpu.write(this.stateBuffer, this.state.initialValues(random));
    this.gpu.write(this.#velocity, new Float32Array(this.params.size));
  }

  /**
   * Records one training step into `plan`: forward with batch statistics,
   * loss, backward and SGD. Set the learning rate with `setLearningRate`.
   */
  recordTrainStep(plan: Plan): void {
    for (const step of this.#forwardTrain) step(plan);
    for (let i = this.#backward.length - 1; i >= 0; i--) this.#backward[i](plan);
    this.#sgd = this.#layers.sgd.step(plan, {
      weights: this.weights,
      grads: this.#grads,
      velocity: this.#velocity,
      decayMask: this.#mask,
    }, {
      count: this.params.size,
      learningRate: 0,
      momentum: this.options.momentum,
      weightDecay: this.options.weightDecay,
    });
  }

  /** Sets the learning rate of the recorded SGD step for the next submit. */
  setLearningRate(learningRate: number): void {
    if (!this.#sgd) throw new Error("recordTrainStep must run before setLearningRate.");
    this.#sgd.setLearningRate(learningRate);
  }

  /** Records an evaluation forward of the first `n` samples of `input` into `plan`. */
  recordEval(plan: Plan, n: number): void {
    if (!(n >= 1 && n <= this.options.batch)) throw new RangeError(`Evaluation batch ${n} is outside 1..${this.options.batch}.`);
    for (const step of this.#forwardEval) step(plan, n);
  }

  /** Floats of trainable parameters, without alignment padding. */
  get parameterCount(): number {
    return this.params.slots.reduce((sum, slot) => sum + slot.size, 0);
  }

  /** Reads weights and running statistics as named tensors (torchvision names). */
  async readTensors(): Promise<{ name: string; shape: number[]; data: Float32Array }[]> {
    const weights = await this.gpu.readF32(this.weights, this.params.size);
    const state = await this.gpu.readF32(this.stateBuffer, this.state.size);
    const tensors = [];
    for (const [arena, values] of [[this.params, weights], [this.state, state]] as const) {
      for (const slot of arena.slots) {
        tensors.push({ name: slot.name, shape: slot.shape, data: values.slice(slot.offset, slot.offset + slot.size) });
      }
    }
    return tensors;
  }

  /** Writes named tensors (as from `readTensors`) back; throws on a missing name or shape mismatch. */
  writeTensors(tensors: Map<string, { shape: number[]; data: Float32Array }>): void {
    for (const [arena, buffer] of [[this.params, this.weights], [this.state, this.stateBuffer]] as const) {
      const values = new Float32Array(arena.size);
      for (const slot of arena.slots) {
        const tensor = tensors.get(slot.name);
        if (!tensor) throw new RangeError(`Checkpoint has no tensor "${slot.name}".`);
        if (tensor.shape.join("x") !== slot.shape.join("x")) {
          throw new RangeError(`Checkpoint tensor "${slot.name}" has shape [${tensor.shape}], expected [${slot.shape}].`);
        }
        values.set(tensor.data, slot.offset);
      }
      this.gpu.write(buffer, values);
    }
  }

  /** Reads and writes the momentum buffer, for checkpoints. */
  async readVelocity(): Promise<Float32Array> {
    return await this.gpu.readF32(this.#velocity, this.params.size);
  }

  writeVelocity(values: Float32Array): void {
    if (values.length !== this.params.size) {
      throw new RangeError(`Checkpoint momentum buffer has ${values.length} floats, expected ${this.params.size}.`);
    }
    this.gpu.write(this.#velocity, values);
  }

  /** Releases every buffer of the network. */
  destroy(): void {
    for (const buffer of this.#buffers) this.gpu.release(buffer);
    this.#buffers = [];
  }
}
