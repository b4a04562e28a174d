package org.lmfnedge.imagecore;

/** Runs the super-resolution program on one tile. */
public interface TileRunner {
    /**
     * @param chw planar RGB in [0, 1], {@code 3 x h x w}; the caller may reuse the array for the
     *     next tile, so a runner must not keep it
     * @return planar RGB {@code 3 x (scale*h) x (scale*w)}; values outside [0, 1] are clamped later
     */
    float[] run(float[] chw, int h, int w);
}
