package org.lmfnedge.imagecore;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.util.Random;
import org.junit.Test;

public class ImageTensorsTest {
    @Test
    public void roundingRule() {
        for (int k = 0; k < 256; k++) {
            assertEquals(k, ImageTensors.toUint8((float) k / 255f));
        }
        assertEquals(0, ImageTensors.toUint8(-0.5f));
        assertEquals(255, ImageTensors.toUint8(1.7f));
        assertEquals(0, ImageTensors.toUint8(Float.NaN));
        assertEquals(255, ImageTensors.toUint8(Float.POSITIVE_INFINITY));
        assertEquals(0, ImageTensors.toUint8(Float.NEGATIVE_INFINITY));
        assertEquals(1, ImageTensors.toUint8(0.5f / 255f));
        assertEquals(0, ImageTensors.toUint8(0.49f / 255f));
    }

    @Test
    public void argbRoundTripForcesOpaqueAlpha() {
        Random random = new Random(3);
        int[] argb = new int[20];
        for (int i = 0; i < argb.length; i++) {
            argb[i] = random.nextInt();
        }
        float[] chw = ImageTensors.argbToChw(argb, 5, 4);
        assertEquals(60, chw.length);
        int[] back = ImageTensors.chwToArgb(chw, 5, 4);
        for (int i = 0; i < argb.length; i++) {
            assertEquals(argb[i] | 0xFF000000, back[i]);
        }
        assertArrayEquals(new float[] {1f, 0f, 0f}, ImageTensors.argbToChw(new int[] {0xFFFF0000}, 1, 1), 0f);
    }

    @Test
    public void windowIsEdgePadded() {
        // 2x3 image, window = rows 0..1, columns 1..2, padded to 3x4.
        int[] argb = {0x000001, 0x000002, 0x000003, 0x000004, 0x000005, 0x000006};
        float[] chw = ImageTensors.argbWindowToChw(argb, 3, 0, 1, 2, 2, 3, 4);
        float[] blue = new float[12];
        System.arraycopy(chw, 24, blue, 0, 12);
        float[] expected = {2, 3, 3, 3, 5, 6, 6, 6, 5, 6, 6, 6};
        for (int i = 0; i < expected.length; i++) {
            expected[i] = expected[i] / 255f;
        }
        assertArrayEquals(expected, blue, 0f);
    }

    @Test(expected = IllegalArgumentException.class)
    public void wrongPixelCountIsRejected() {
        ImageTensors.argbToChw(new int[5], 2, 2);
    }
}
