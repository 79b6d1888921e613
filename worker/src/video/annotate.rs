//! Drawing a pose or detection answer onto its video frame, for the
//! annotated output video of `keypoints` and `detection` models.
//!
//! The picture is what a viewer of the console sees over a still image:
//! points, the manifest's skeleton edges between them, and boxes (a
//! multi-person model's persons and a detector's detections) — in the
//! frame's own pixels, which is what the predictions are in. No text: the
//! labels and scores are in the frame's JSON line. Plain integer drawing on
//! the RGB buffer, clipped to the frame, so an answer outside the picture
//! cannot index out of it.

use image::{Rgb, RgbImage};
use inferq_core::prediction::{BoundingBox, Keypoint, Prediction};

/// Points under this score are not drawn (nor the edges touching them),
/// as in the console.
const MIN_POINT_SCORE: f32 = 0.2;
const POINT: Rgb<u8> = Rgb([255, 48, 48]);
const EDGE: Rgb<u8> = Rgb([48, 255, 96]);
const BOX: Rgb<u8> = Rgb([255, 208, 0]);
const POINT_RADIUS: i64 = 3;
const LINE_WIDTH: i64 = 2;

/// Draws `p` onto `frame`; other kinds leave it as it is.
pub(super) fn draw(frame: &mut RgbImage, p: &Prediction) {
    match p {
        Prediction::Keypoints {
            keypoints,
            skeleton,
            persons,
        } => match persons {
            Some(persons) => {
                for person in persons {
                    if let Some(b) = &person.bbox {
                        rect(frame, b, BOX);
                    }
                    pose(frame, &person.keypoints, skeleton);
                }
            }
            None => pose(frame, keypoints, skeleton),
        },
        Prediction::Detection { detections } => {
            for d in detections {
                rect(frame, &d.bbox, BOX);
            }
        }
        _ => {}
    }
}

fn pose(frame: &mut RgbImage, points: &[Keypoint], skeleton: &[[usize; 2]]) {
    let seen = |i: usize| points.get(i).filter(|k| k.score >= MIN_POINT_SCORE);
    for [a, b] in skeleton {
        if let (Some(a), Some(b)) = (seen(*a), seen(*b)) {
            line(frame, (a.x, a.y), (b.x, b.y), EDGE);
        }
    }
    for k in points.iter().filter(|k| k.score >= MIN_POINT_SCORE) {
        disc(frame, k.x, k.y, POINT);
    }
}

fn put(frame: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && x < i64::from(frame.width()) && y < i64::from(frame.height()) {
        frame.put_pixel(x as u32, y as u32, c);
    }
}

/// A filled disc; a non-finite centre draws nothing.
fn disc(frame: &mut RgbImage, x: f32, y: f32, c: Rgb<u8>) {
    if !x.is_finite() || !y.is_finite() {
        return;
    }
    let (cx, cy) = (x.round() as i64, y.round() as i64);
    for dy in -POINT_RADIUS..=POINT_RADIUS {
        for dx in -POINT_RADIUS..=POINT_RADIUS {
            if dx * dx + dy * dy <= POINT_RADIUS * POINT_RADIUS {
                put(frame, cx + dx, cy + dy, c);
            }
        }
    }
}

/// A line `LINE_WIDTH` pixels wide, stepped along its longer axis.
fn line(frame: &mut RgbImage, a: (f32, f32), b: (f32, f32), c: Rgb<u8>) {
    if ![a.0, a.1, b.0, b.1].iter().all(|v| v.is_finite()) {
        return;
    }
    // Bounded: an edge longer than the frame's diagonal is clipped anyway.
    let limit = f32::from(u16::MAX);
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let steps = dx.abs().max(dy.abs()).ceil().clamp(1.0, limit) as i64;
    for s in 0..=steps {
        let t = s as f32 / steps as f32;
        let (x, y) = ((a.0 + dx * t).round() as i64, (a.1 + dy * t).round() as i64);
        for o in 0..LINE_WIDTH {
            put(frame, x + o, y, c);
            put(frame, x, y + o, c);
        }
    }
}

fn rect(frame: &mut RgbImage, b: &BoundingBox, c: Rgb<u8>) {
    let (x1, y1, x2, y2) = (b.x1, b.y1, b.x2, b.y2);
    line(frame, (x1, y1), (x2, y1), c);
    line(frame, (x2, y1), (x2, y2), c);
    line(frame, (x2, y2), (x1, y2), c);
    line(frame, (x1, y2), (x1, y1), c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferq_core::prediction::Detection;

    fn kp(x: f32, y: f32, score: f32) -> Keypoint {
        Keypoint {
            name: "p".into(),
            x,
            y,
            score,
        }
    }

    #[test]
    fn points_edges_and_boxes_land_where_the_answer_says() {
        let mut f = RgbImage::new(64, 48);
        let p = Prediction::Keypoints {
            keypoints: vec![
                kp(32.0, 12.0, 0.9),
                kp(16.0, 24.0, 0.8),
                kp(48.0, 36.0, 0.1),
            ],
            skeleton: vec![[0, 1], [0, 2]],
            persons: None,
        };
        draw(&mut f, &p);
        assert_eq!(*f.get_pixel(32, 12), POINT);
        assert_eq!(*f.get_pixel(16, 24), POINT);
        // Under the score: neither the point nor its edge.
        assert_eq!(*f.get_pixel(48, 36), Rgb([0, 0, 0]));
        assert_eq!(*f.get_pixel(40, 24), Rgb([0, 0, 0]));
        // The edge 0-1 passes through its midpoint.
        assert_eq!(*f.get_pixel(24, 18), EDGE);

        let mut f = RgbImage::new(64, 48);
        let bbox = BoundingBox {
            x1: 4.0,
            y1: 6.0,
            x2: 28.0,
            y2: 36.0,
        };
        let d = Prediction::Detection {
            detections: vec![Detection {
                class: 0,
                label: "a".into(),
                score: 0.9,
                bbox,
            }],
        };
        draw(&mut f, &d);
        assert_eq!(*f.get_pixel(16, 6), BOX);
        assert_eq!(*f.get_pixel(4, 20), BOX);
        assert_eq!(*f.get_pixel(16, 20), Rgb([0, 0, 0]), "only the outline");
    }

    #[test]
    fn answers_outside_the_frame_or_not_finite_draw_nothing_and_never_panic() {
        let mut f = RgbImage::new(8, 8);
        let p = Prediction::Keypoints {
            keypoints: vec![
                kp(-1e9, 4.0, 1.0),
                kp(f32::NAN, 1.0, 1.0),
                kp(1e12, f32::INFINITY, 1.0),
            ],
            skeleton: vec![[0, 1], [1, 2], [0, 2], [5, 9]],
            persons: None,
        };
        draw(&mut f, &p);
        assert!(f.pixels().all(|p| *p == Rgb([0, 0, 0])));
    }
}
