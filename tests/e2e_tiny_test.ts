// The whole chain on real images from ../shared/data/tiny: encode, compress,
// decode and train. Skips when that folder is absent (it is not shipped).

import { assert, assertEquals } from "@std/assert";
import { join } from "@std/path";
import { Log } from "../src/cli/log.ts";
import { decodeQans, encodeQans } from "../src/format/entropy.ts";
import { readRinr } from "../src/format/mod.ts";
import { compressStage, decodeStage, encodeStage, trainStage } from "../src/cli/stages.ts";

const TINY = new URL("../../shared/data/tiny/cifar10-png", import.meta.url).pathname;
const available = await Deno.stat(TINY).then(() => true, () => false);
if (!available) console.warn(`e2e test skipped: ${TINY} is absent (real test images are not shipped).`);

Deno.test({
  name: "e2e tiny cifar encode compress decode train",
  ignore: !available,
  async fn() {
    const dir = await Deno.makeTempDir();
    const log = new Log("quiet", { json: true });
    const dataset = { path: TINY };

    // 20 CIFAR-10 images, 32x32. 300 iterations of the 5x13 SIREN reach
    // about 20 dB on these images; the floor leaves room for adapter noise.
    const encode = await encodeStage({
      dataset,
      output: join(dir, "tiny.rinr"),
      preset: "cifar",
      iterations: 300,
      learningRate: 1e-3,
      seed: 1,
      overwrite: false,
    }, log);
    assertEquals(encode.images, 20);
    assert(encode.meanPsnr > 17, `encode mean PSNR ${encode.meanPsnr} dB is below the 17 dB floor`);

    // Bits chosen per layer, two pruning steps after the rounding step, each
    // image kept at its sparsest step within 1 dB of its fp32 fit.
    const compress = await compressStage({
      input: join(dir, "tiny.rinr"),
      output: join(dir, "tiny-q8.rinr"),
      bits: "auto",
      tuneIterations: 60,
      sparsities: [0, 0.1, 0.3],
      maxPsnrDrop: 1,
      overwrite: false,
    }, log);
    assertEquals(compress.rawBytes, 20 * 32 * 32 * 3);
    assert(compress.percentOfRaw < 35, `compressed file is ${compress.percentOfRaw}% of raw`);
    assert(compress.meanPsnr > compress.meanPsnrBefore - 1.5, `compressed mean PSNR ${compress.meanPsnr} dB`);
    assert(Math.abs(compress.meanPsnrBefore - encode.meanPsnr) < 0.5, "PSNR from decoded PNG pixels matches the encoder's");
    assertEquals(compress.stepImages!.reduce((a, b) => a + b, 0), 20);
    assert(compress.p5Psnr <= compress.meanPsnr);
    // The coded codes of real, pruned weights decode bit-exactly.
    const stored = await readRinr(join(dir, "tiny-q8.rinr"));
    const codes = stored.weights;
    if (codes instanceof Float32Array) throw new Error("the compressed file holds fp32 weights");
    assert(stored.sections.some((section) => section.tag === "QANS"), "the file is entropy-coded");
    assertEquals(decodeQans(encodeQans(codes), codes), codes.codes);
    assertEquals(compress.bitsPerPixel, (8 * compress.storedBytes) / (20 * 32 * 32));

    const decoded = await decodeStage({ input: join(dir, "tiny-q8.rinr"), outputDir: join(dir, "png"), source: "", overwrite: false }, log);
    assertEquals(decoded.images, 20);
    assert(Math.abs(decoded.meanPsnr! - compress.meanPsnr) < 1e-6, "decode PSNR equals compress PSNR");
    const pngs = [...Deno.readDirSync(join(dir, "png"))].length;
    assertEquals(pngs, 10, "one folder per class");

    const trained = await trainStage({
      input: "inr",
      rinr: join(dir, "tiny-q8.rinr"),
      test: { path: TINY },
      epochs: 6,
      batch: 10,
      learningRate: 0.05,
      momentum: 0.9,
      weightDecay: 0,
      width: 4,
      seed: 1,
      output: join(dir, "model.safetensors"),
      overwrite: false,
    }, log);
    const losses = trained.epochs.map((e) => e.trainLoss);
    assert(losses[losses.length - 1] < losses[0], `training loss did not fall: ${losses.map((l) => l.toFixed(3))}`);
    assert((await Deno.stat(join(dir, "model.safetensors"))).size > 1000);
    await Deno.remove(dir, { recursive: true });
  },
});
