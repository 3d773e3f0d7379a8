//! Drawing the tasks' overlays onto a frame: rectangles, lines, circles, text and the
//! caption look they share. Everything clips to the frame, so callers pass raw coordinates.

use crate::media::Frame;
use font8x8::UnicodeFonts;

#[cfg(test)]
/// Mixes `color` into one RGB `pixel` with opacity `alpha` (255: opaque).
pub fn blend(pixel: &mut [u8], color: [u8; 3], alpha: u8) {
    Tint::new(color, alpha).apply(pixel);
}

/// A colour at some opacity, ready to mix into rows of RGB pixels.
struct Tint {
    /// colour * alpha (+ 127 to round) for 16 pixels: rows blend in fixed-size blocks,
    /// which the compiler vectorises (large translucent boxes are the costliest drawing).
    weighted: [u16; 48],
    /// 255 - alpha: the weight of what was there.
    keep: u16,
}

impl Tint {
    fn new(color: [u8; 3], alpha: u8) -> Tint {
        let a = u16::from(alpha);
        Tint {
            weighted: std::array::from_fn(|i| u16::from(color[i % 3]) * a + 127),
            keep: 255 - a,
        }
    }

    /// Blends into `span`, whole RGB pixels from its start.
    fn apply(&self, span: &mut [u8]) {
        let mix = |block: &mut [u8]| {
            for (p, w) in block.iter_mut().zip(&self.weighted) {
                // At most 255 * 255 + 127: fits u16.
                *p = ((w + u16::from(*p) * self.keep) / 255) as u8;
            }
        };
        let mut blocks = span.chunks_exact_mut(self.weighted.len());
        blocks.by_ref().for_each(mix);
        mix(blocks.into_remainder());
    }
}

/// Fills the pixels x1..x2, y1..y2 (x2 and y2 excluded) with `color` at opacity `alpha`.
pub fn fill_rect(frame: &mut Frame, x1: i32, y1: i32, x2: i32, y2: i32, color: [u8; 3], alpha: u8) {
    let clip = |v: i32, size: u32| v.clamp(0, size as i32) as usize;
    let (x1, x2) = (clip(x1, frame.width), clip(x2, frame.width));
    let (y1, y2) = (clip(y1, frame.height), clip(y2, frame.height));
    if x1 >= x2 || y1 >= y2 || alpha == 0 {
        return;
    }
    let stride = frame.width as usize * 3;
    let tint = (alpha < 255).then(|| Tint::new(color, alpha));
    for row in frame.rgb.chunks_exact_mut(stride).take(y2).skip(y1) {
        let span = &mut row[x1 * 3..x2 * 3];
        match &tint {
            Some(tint) => tint.apply(span),
            None => span
                .chunks_exact_mut(3)
                .for_each(|pixel| pixel.copy_from_slice(&color)),
        }
    }
}

/// The outline of the rectangle x1..x2, y1..y2, `thickness` pixels wide, drawn inside it.
pub fn rect_outline(
    frame: &mut Frame,
    x1: i32,
    y1: i32,
    x2: i32,
    y2: i32,
    color: [u8; 3],
    thickness: u32,
) {
    let t = thickness.min(i32::MAX as u32) as i32;
    fill_rect(frame, x1, y1, x2, y1.saturating_add(t), color, 255);
    fill_rect(frame, x1, y2.saturating_sub(t), x2, y2, color, 255);
    fill_rect(frame, x1, y1, x1.saturating_add(t), y2, color, 255);
    fill_rect(frame, x2.saturating_sub(t), y1, x2, y2, color, 255);
}

/// A line `thickness` pixels wide from (x1, y1) to (x2, y2).
pub fn line(frame: &mut Frame, x1: f32, y1: f32, x2: f32, y2: f32, color: [u8; 3], thickness: u32) {
    // Wider than the frame draws nothing more, and would only cost time.
    let thickness = thickness.clamp(1, frame.width.max(frame.height).max(1));
    let margin = thickness as f32;
    let bounds = [
        -margin,
        -margin,
        frame.width as f32 + margin,
        frame.height as f32 + margin,
    ];
    // Only the visible part is walked, so far-away end points cost nothing.
    let Some([x1, y1, x2, y2]) = clip_segment([x1, y1, x2, y2], bounds) else {
        return;
    };
    let (dx, dy) = (x2 - x1, y2 - y1);
    let length = dx.hypot(dy);
    let steps = dx.abs().max(dy.abs()).ceil().max(1.0);
    // One span across the line per step along its main axis, as long as keeps the width
    // `thickness` measured square to the line.
    let across = (thickness as f32 * length / dx.abs().max(dy.abs()).max(1e-6)).round();
    let half = (across / 2.0).floor() as i32;
    let across = across as i32;
    let mostly_horizontal = dx.abs() >= dy.abs();
    for i in 0..=steps as u32 {
        let t = i as f32 / steps;
        let (x, y) = ((x1 + dx * t) as i32, (y1 + dy * t) as i32);
        if mostly_horizontal {
            fill_rect(frame, x, y - half, x + 1, y - half + across, color, 255);
        } else {
            fill_rect(frame, x - half, y, x - half + across, y + 1, color, 255);
        }
    }
}

/// The part of segment `s` (x1, y1, x2, y2) inside `bounds` (Liang-Barsky); `None` when it
/// misses them or is not a finite segment.
fn clip_segment(s: [f32; 4], bounds: [f32; 4]) -> Option<[f32; 4]> {
    if s.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let (dx, dy) = (s[2] - s[0], s[3] - s[1]);
    let (mut t0, mut t1) = (0.0f32, 1.0f32);
    for (p, q) in [
        (-dx, s[0] - bounds[0]),
        (dx, bounds[2] - s[0]),
        (-dy, s[1] - bounds[1]),
        (dy, bounds[3] - s[1]),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else if p < 0.0 {
            t0 = t0.max(q / p);
        } else {
            t1 = t1.min(q / p);
        }
    }
    (t0 <= t1).then(|| {
        [
            s[0] + t0 * dx,
            s[1] + t0 * dy,
            s[0] + t1 * dx,
            s[1] + t1 * dy,
        ]
    })
}

/// A filled disc of `radius` pixels around (cx, cy).
pub fn circle(frame: &mut Frame, cx: f32, cy: f32, radius: f32, color: [u8; 3]) {
    if !(cx.is_finite() && cy.is_finite() && radius > 0.0) {
        return;
    }
    let top = (cy - radius).floor().max(0.0) as i32;
    let bottom = (cy + radius).ceil().min(frame.height as f32) as i32;
    for y in top..bottom {
        // The pixel row's centre, and the half-width of the disc there.
        let dy = y as f32 + 0.5 - cy;
        let half = (radius * radius - dy * dy).max(0.0).sqrt();
        let x1 = (cx - half).round().max(-1.0).min(frame.width as f32) as i32;
        let x2 = (cx + half).round().max(-1.0).min(frame.width as f32) as i32;
        fill_rect(frame, x1, y, x2, y + 1, color, 255);
    }
}

/// Writes `text` with its top-left corner at (x, y) in the 8x8 font magnified `scale`
/// times, on an optional `(colour, alpha)` box padded by `scale` pixels. Returns the size
/// drawn (box included), clipped or not.
pub fn text(
    frame: &mut Frame,
    x: i32,
    y: i32,
    text: &str,
    color: [u8; 3],
    background: Option<([u8; 3], u8)>,
    scale: u32,
) -> (u32, u32) {
    let scale = scale.clamp(1, 64);
    let pad = if background.is_some() { scale } else { 0 };
    let glyph = 8 * scale;
    let (width, height) = text_size(text, scale, background.is_some());
    if let Some((fill, alpha)) = background {
        let (x2, y2) = (
            x.saturating_add(width as i32),
            y.saturating_add(height as i32),
        );
        fill_rect(frame, x, y, x2, y2, fill, alpha);
    }
    for (i, c) in text.chars().enumerate() {
        let left = x.saturating_add((pad + i as u32 * glyph) as i32);
        if left >= frame.width as i32 {
            break;
        }
        let top = y.saturating_add(pad as i32);
        draw_glyph(frame, left, top, glyph_of(c), scale as i32, color);
    }
    (width, height)
}

/// The size `text` takes at `scale` (clamped to 1..=64 as `text` does), with or without
/// the padding of a background box.
fn text_size(text: &str, scale: u32, boxed: bool) -> (u32, u32) {
    let scale = scale.clamp(1, 64);
    let pad = if boxed { 2 * scale } else { 0 };
    let glyphs = text.chars().count().min(u32::MAX as usize / 512) as u32;
    (glyphs * 8 * scale + pad, 8 * scale + pad)
}

/// One glyph with its top-left corner at (left, top), each font pixel `s` x `s`.
fn draw_glyph(frame: &mut Frame, left: i32, top: i32, bitmap: [u8; 8], s: i32, color: [u8; 3]) {
    for (row, bits) in (0..).zip(bitmap) {
        let y = top.saturating_add(row * s);
        // Bit 0 is the leftmost pixel of a glyph row.
        for column in (0..8).filter(|b| bits & (1 << b) != 0) {
            let x = left.saturating_add(column * s);
            fill_rect(
                frame,
                x,
                y,
                x.saturating_add(s),
                y.saturating_add(s),
                color,
                255,
            );
        }
    }
}

/// The bitmap of `c`: ASCII, then Latin-1; anything else shows as '?'.
fn glyph_of(c: char) -> [u8; 8] {
    font8x8::BASIC_FONTS
        .get(c)
        .or_else(|| font8x8::LATIN_FONTS.get(c))
        .or_else(|| font8x8::BASIC_FONTS.get('?'))
        .unwrap_or_default()
}

/// How much captions and lines are magnified on `frame`: 1 up to 360 lines, 2 for 720p,
/// 3 for 1080p, so they read the same at any resolution.
pub fn scale_for(frame: &Frame) -> u32 {
    frame.height.div_ceil(360).max(1)
}

/// Opacity of a caption's box: see-through, yet dark enough behind white text.
const LABEL_ALPHA: u8 = 170;

/// A caption: white text on a translucent `background` box at (x, y), sized for the frame.
/// Returns the box's size.
pub fn label(frame: &mut Frame, x: i32, y: i32, caption: &str, background: [u8; 3]) -> (u32, u32) {
    let scale = scale_for(frame);
    text(
        frame,
        x,
        y,
        caption,
        [255, 255, 255],
        Some((background, LABEL_ALPHA)),
        scale,
    )
}

/// The size `label` gives `caption` on `frame`, to place it before drawing.
pub fn label_size(frame: &Frame, caption: &str) -> (u32, u32) {
    text_size(caption, scale_for(frame), true)
}

/// A colour per class id, stable across runs and far apart for neighbouring ids: hues
/// stepped by the golden angle, in two brightnesses.
pub fn class_color(id: usize) -> [u8; 3] {
    const GOLDEN: f32 = 0.618_034;
    let hue = (id as f32 * GOLDEN).fract();
    let value = if id % 2 == 0 { 0.95 } else { 0.75 };
    hsv(hue, 0.8, value)
}

/// HSV (each 0..1) to RGB.
fn hsv(hue: f32, saturation: f32, value: f32) -> [u8; 3] {
    let h = hue * 6.0;
    let sector = h.floor() as u32 % 6;
    let f = h - h.floor();
    let (p, q, t) = (
        value * (1.0 - saturation),
        value * (1.0 - saturation * f),
        value * (1.0 - saturation * (1.0 - f)),
    );
    let (r, g, b) = match sector {
        0 => (value, t, p),
        1 => (q, value, p),
        2 => (p, value, t),
        3 => (p, q, value),
        4 => (t, p, value),
        _ => (value, p, q),
    };
    [r, g, b].map(|v| (v * 255.0).round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(frame: &Frame, color: [u8; 3]) -> usize {
        frame.rgb.chunks(3).filter(|p| *p == color).count()
    }

    const RED: [u8; 3] = [255, 0, 0];

    #[test]
    fn blending_mixes_by_alpha() {
        let mut pixel = [0u8, 100, 255];
        blend(&mut pixel, [255, 255, 255], 0);
        assert_eq!(pixel, [0, 100, 255]);
        blend(&mut pixel, [200, 0, 0], 128);
        assert_eq!(pixel, [100, 50, 127]);
        blend(&mut pixel, [9, 9, 9], 255);
        assert_eq!(pixel, [9, 9, 9]);
    }

    #[test]
    fn rectangles_clip_to_the_frame() {
        let mut frame = Frame::new(10, 8);
        fill_rect(&mut frame, -5, -5, 3, 2, RED, 255);
        assert_eq!(count(&frame, RED), 6);
        fill_rect(&mut frame, 8, 6, i32::MAX, i32::MAX, RED, 255);
        assert_eq!(count(&frame, RED), 10);
        fill_rect(&mut frame, i32::MIN, 0, i32::MIN + 4, 8, RED, 255);
        fill_rect(&mut frame, 5, 5, 2, 2, RED, 255);
        assert_eq!(count(&frame, RED), 10);
        let mut frame = Frame::new(10, 8);
        rect_outline(&mut frame, 2, 2, 8, 6, RED, 1);
        assert_eq!(count(&frame, RED), 2 * 6 + 2 * 2);
        assert_eq!(frame.pixel(4, 4), [0, 0, 0]);
        rect_outline(&mut frame, -20, -20, 50, 50, RED, 2);
        rect_outline(
            &mut frame,
            i32::MIN,
            i32::MIN,
            i32::MAX,
            i32::MAX,
            RED,
            u32::MAX,
        );
    }

    #[test]
    fn lines_have_their_thickness_and_clip() {
        let mut frame = Frame::new(20, 20);
        line(&mut frame, 2.0, 10.0, 17.0, 10.0, RED, 3);
        assert_eq!(count(&frame, RED), 16 * 3);
        let mut frame = Frame::new(20, 20);
        line(&mut frame, 0.0, 0.0, 19.0, 19.0, RED, 1);
        assert_eq!(frame.pixel(0, 0), RED);
        assert_eq!(frame.pixel(10, 10), RED);
        assert_eq!(frame.pixel(19, 19), RED);
        assert_eq!(frame.pixel(0, 19), [0, 0, 0]);
        // A diagonal keeps its width measured square to it: about 3 * sqrt(2) a row.
        let mut frame = Frame::new(40, 40);
        line(&mut frame, 5.0, 5.0, 35.0, 35.0, RED, 3);
        let row: usize = (0..40).filter(|&x| frame.pixel(x, 20) == RED).count();
        assert!((4..=5).contains(&row), "{row}");
        for ends in [
            [-1e9, -1e9, 1e9, 1e9],
            [-50.0, 5.0, -10.0, 5.0],
            [f32::NAN, 0.0, 5.0, 5.0],
            [f32::INFINITY, 0.0, 5.0, 5.0],
            [3.0, 3.0, 3.0, 3.0],
        ] {
            line(&mut frame, ends[0], ends[1], ends[2], ends[3], RED, 4);
        }
    }

    #[test]
    fn circles_are_round_and_clip() {
        let mut frame = Frame::new(30, 30);
        circle(&mut frame, 15.0, 15.0, 5.0, RED);
        let area = count(&frame, RED) as f32;
        assert!((area - std::f32::consts::PI * 25.0).abs() < 10.0, "{area}");
        assert_eq!(frame.pixel(15, 15), RED);
        assert_eq!(frame.pixel(15, 21), [0, 0, 0]);
        circle(&mut frame, 0.0, 29.0, 8.0, RED);
        circle(&mut frame, -100.0, 1e9, 8.0, RED);
        circle(&mut frame, 5.0, 5.0, f32::NAN, RED);
        assert_eq!(frame.pixel(0, 29), RED);
    }

    #[test]
    fn text_reports_its_size_and_clips() {
        let mut frame = Frame::new(40, 20);
        let size = text(&mut frame, 1, 1, "Hi", RED, None, 1);
        assert_eq!(size, (16, 8));
        // 'H' has its two uprights in glyph columns 0..2 and 4..6 (font8x8's bitmap).
        assert_eq!(frame.pixel(1, 2), RED);
        assert_eq!(frame.pixel(1 + 2, 2), [0, 0, 0]);
        let boxed = text(&mut frame, 30, 15, "é€", RED, Some(([0, 0, 255], 255)), 2);
        assert_eq!(boxed, (2 * 16 + 4, 16 + 4));
        assert_eq!(frame.pixel(30, 15), [0, 0, 255]);
        text(&mut frame, -100, -3, "clipped", RED, Some((RED, 100)), 3);
        text(
            &mut frame,
            i32::MAX - 5,
            i32::MAX - 5,
            "far",
            RED,
            Some((RED, 9)),
            1,
        );
        let mut frame = Frame::new(720, 720);
        let (w, h) = label(&mut frame, 0, 0, "dog 47%", [0, 0, 0]);
        assert_eq!((w, h), (7 * 16 + 4, 20));
        assert_eq!(label_size(&frame, "dog 47%"), (w, h));
        assert_eq!(frame.pixel(0, 0), [0, 0, 0]);
        assert_eq!(count(&frame, [255, 255, 255]) % 4, 0);
        assert!(count(&frame, [255, 255, 255]) > 50);
    }

    #[test]
    fn class_colours_are_stable_and_distinct() {
        assert_eq!(class_color(3), class_color(3));
        let colours: Vec<[u8; 3]> = (0..80).map(class_color).collect();
        for (i, a) in colours.iter().enumerate() {
            for b in &colours[i + 1..(i + 6).min(80)] {
                let distance: i32 = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (*x as i32 - *y as i32).abs())
                    .sum();
                assert!(distance > 60, "{i}: {a:?} vs {b:?}");
            }
        }
    }
}
