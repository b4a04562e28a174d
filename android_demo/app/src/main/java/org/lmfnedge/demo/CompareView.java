package org.lmfnedge.demo;

import android.content.Context;
import android.graphics.Bitmap;
import android.graphics.Canvas;
import android.graphics.Paint;
import android.graphics.RectF;
import android.util.AttributeSet;
import android.view.MotionEvent;
import android.view.View;

/**
 * Before/after comparison: the upscaled image left of a movable split, the input (drawn at the
 * same size) right of it. Drag on the view or use the slider to move the split.
 */
public class CompareView extends View {
    /** Notified when a drag moves the split, so a slider can follow. */
    public interface OnSplitChangedListener {
        void onSplitChanged(float split);
    }

    private final Paint imagePaint = new Paint(Paint.FILTER_BITMAP_FLAG);
    private final Paint linePaint = new Paint(Paint.ANTI_ALIAS_FLAG);
    private final RectF dst = new RectF();
    private Bitmap before;
    private Bitmap after;
    private float split = 0.5f;
    private OnSplitChangedListener listener;

    public CompareView(Context context, AttributeSet attrs) {
        super(context, attrs);
        linePaint.setColor(0xFFFFFFFF);
        linePaint.setStrokeWidth(3f * getResources().getDisplayMetrics().density);
    }

    /** {@code after} may be null (nothing upscaled yet): then only {@code before} is shown. */
    public void setImages(Bitmap before, Bitmap after) {
        this.before = before;
        this.after = after;
        invalidate();
    }

    /** Fraction of the image width, from the left, that shows the upscaled image. */
    public void setSplit(float split) {
        this.split = Math.max(0f, Math.min(1f, split));
        invalidate();
    }

    public void setOnSplitChangedListener(OnSplitChangedListener listener) {
        this.listener = listener;
    }

    @Override
    protected void onDraw(Canvas canvas) {
        super.onDraw(canvas);
        if (before == null) {
            return;
        }
        fitCenter(before.getWidth(), before.getHeight());
        canvas.drawBitmap(before, null, dst, imagePaint);
        if (after == null) {
            return;
        }
        float x = dst.left + split * dst.width();
        canvas.save();
        canvas.clipRect(dst.left, dst.top, x, dst.bottom);
        canvas.drawBitmap(after, null, dst, imagePaint);
        canvas.restore();
        canvas.drawLine(x, dst.top, x, dst.bottom, linePaint);
    }

    @Override
    public boolean onTouchEvent(MotionEvent event) {
        if (after == null || dst.width() <= 0) {
            return super.onTouchEvent(event);
        }
        int action = event.getActionMasked();
        if (action == MotionEvent.ACTION_DOWN || action == MotionEvent.ACTION_MOVE) {
            getParent().requestDisallowInterceptTouchEvent(true);
            setSplit((event.getX() - dst.left) / dst.width());
            if (listener != null) {
                listener.onSplitChanged(split);
            }
            return true;
        }
        if (action == MotionEvent.ACTION_UP) {
            performClick();
        }
        return super.onTouchEvent(event);
    }

    @Override
    public boolean performClick() {
        return super.performClick();
    }

    private void fitCenter(int imageW, int imageH) {
        float viewW = getWidth() - getPaddingLeft() - getPaddingRight();
        float viewH = getHeight() - getPaddingTop() - getPaddingBottom();
        float f = Math.min(viewW / imageW, viewH / imageH);
        float w = imageW * f;
        float h = imageH * f;
        float left = getPaddingLeft() + (viewW - w) / 2f;
        float top = getPaddingTop() + (viewH - h) / 2f;
        dst.set(left, top, left + w, top + h);
    }
}
