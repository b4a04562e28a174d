package org.lmfnedge.demo;

import java.io.Closeable;
import java.util.Arrays;
import org.lmfnedge.imagecore.TileRunner;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;

/**
 * Runs one tile through an ExecuTorch program: float32 {@code 1x3xhxw} in, {@code 1x3x(sh)x(sw)}
 * out. A {@link Module} is not safe to use from two threads at once: call from one executor.
 */
final class ExecuTorchTileRunner implements TileRunner, Closeable {
    private final Module module;
    private final int scale;

    ExecuTorchTileRunner(String ptePath, int scale) {
        this.module = Module.load(ptePath);
        this.scale = scale;
    }

    @Override
    public float[] run(float[] chw, int h, int w) {
        Tensor input = Tensor.fromBlob(chw, new long[] {1, 3, h, w});
        EValue[] outputs = module.forward(EValue.from(input));
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
