import { assert, assertEquals } from "@std/assert";
import { Plan } from "../src/gpu/kernel.ts";
import { readLossStats, resetLossStats } from "../src/train/layers.ts";
import { ResNet18 } from "../src/train/resnet.ts";
import { seededRandom, testGpu } from "./_util.ts";

async function overfit(inputSize: number, width: number): Promise<number[]> {
  const gpu = await testGpu();
  const batch = 4;
  const net = await ResNet18.create(gpu, { classes: 3, inputSize, width, batch, weightDecay: 0 });
  const random = seededRandom(7);
  net.initialize(random);
  const input = new Float32Array(batch * 3 * inputSize * inputSize).map(() => random() * 2 - 1);
  gpu.write(net.input, input);
  gpu.write(net.labels, new Uint32Array([0, 1, 2, 1]));
  const plan = new Plan(gpu, "train step");
  net.recordTrainStep(plan);
  net.setLearningRate(0.05);
  const losses: number[] = [];
  for (let step = 0; step < 12; step++) {
    resetLossStats(gpu, net.trainStats);
    plan.submit();
    const stats = await readLossStats(gpu, net.trainStats);
    assertEquals(stats.invalidLabels, 0);
    losses.push(stats.meanLoss);
  }
  plan.destroy();
  net.destroy();
  return losses;
}

Deno.test("resnet small stem overfits one batch", async () => {
  const losses = await overfit(8, 4);
  assert(losses.every(Number.isFinite), `losses ${losses}`);
  assert(losses[losses.length - 1] < 0.5 * losses[0], `loss did not fall: ${losses.map((l) => l.toFixed(3))}`);
});

Deno.test("resnet large stem overfits one batch", async () => {
  const losses = await overfit(72, 2);
  assert(losses.every(Number.isFinite), `losses ${losses}`);
  assert(losses[losses.length - 1] < 0.5 * losses[0], `loss did not fall: ${losses.map((l) => l.toFixed(3))}`);
});

Deno.test("resnet tensors use torchvision names", async () => {
  const gpu = await testGpu();
  const net = await ResNet18.create(gpu, { classes: 10, inputSize: 32, width: 4, batch: 2 });
  const names = net.params.slots.map((s) => s.name);
  assert(names.includes("conv1.weight"));
  assert(names.includes("layer2.0.downsample.0.weight"));
  assert(names.includes("layer4.1.bn2.bias"));
  assert(names.includes("fc.weight"));
  assertEquals(net.params.slots.filter((s) => s.name.endsWith("conv1.weight") || s.name.endsWith("conv2.weight")).length, 17);
  net.destroy();
});
