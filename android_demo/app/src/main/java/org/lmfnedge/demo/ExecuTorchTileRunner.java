package org.lmfnedge.demo;

import java.io.Closeable;
import java.nio.FloatBuffer;
import java.util.Arrays;
import org.lmfnedge.imagecore.TileRunner;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;

/**
 * Runs one tile through an ExecuTorch program: float32 {@code 1x3xhxw} in, {@code 1x3x(sh)x(sw)}
 * out. A {@link Module} is not safe to use from two threads at once: call from one executor.
 *
 * <p>The constructor loads the program's method and runs it once on a blank tile, so the first
 * real tile's latency is the program's own, not the loading of the method or XNNPACK's weight
 * packing. The input tensor is one direct buffer of the program's fixed tile, filled anew for
 * every tile, so tiling allocates nothing per tile on the native side.
 */
final class ExecuTorchTileRunner implements TileRunner, Closeable {
    private final Module module;
    private final int scale;
    private final int tile;
    private final FloatBuffer input;
    private final Tensor inputTensor;
    /** Milliseconds the method took to load and to run the warm-up tile. */
    final long loadMillis;
    final long warmupMillis;

    ExecuTorchTileRunner(String ptePath, int scale, int tile) {
        long start = System.nanoTime();
        this.module = Module.load(ptePath, Module.LOAD_MODE_MMAP);
        this.module.loadMethod("forward");
        this.loadMillis = (System.nanoTime() - start) / 1_000_000;
        this.scale = scale;
        this.tile = tile;
        this.input = Tensor.allocateFloatBuffer(3 * tile * tile);
        this.inputTensor = Tensor.fromBlob(input, new long[] {1, 3, tile, tile});
        start = System.nanoTime();
        run(new float[3 * tile * tile], tile, tile);
        this.warmupMillis = (System.nanoTime() - start) / 1_000_000;
    }

    @Override
    public float[] run(float[] chw, int h, int w) {
        if (h != tile || w != tile) {
            throw new IllegalArgumentException("this program takes " + tile + "x" + tile + " tiles, got " + h + "x" + w);
        }
        input.clear();
        input.put(chw);
        EValue[] outputs = module.forward(EValue.from(inputTensor));
        if (outputs.length == 0) {
            throw new IllegalStateException("program returned no outputs");
        }
        Tensor output = outputs[0].toTensor();
        long[] shape = output.shape();
        long[] expected = {1, 3, (long) scale * h, (long) scale * w};
        if (!Arrays.equals(shape, expected)) {
            throw new IllegalStateException("program returned shape " + Arrays.toString(shape)
                    + " for a " + h + "x" + w + " tile, expected " + Arrays.toString(expected)
                    + "; does the manifest belong to this .pte?");
        }
        return output.getDataAsFloatArray();
    }

    @Override
    public void close() {
        module.destroy();
    }
}
