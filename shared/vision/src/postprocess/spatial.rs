//! Keypoints (pose) and detections (boxes), mapped to original-image pixels.
//!
//! Models report positions in their own input space — normalised 0..1 or
//! input pixels — after the image was resized, cropped or letterboxed. The
//! preprocessing [`Geometry`] undoes that, so a client draws the result
//! straight onto the image it sent.

use super::{BoundingBox, Detection, Keypoint, OutputError, Person, Prediction};
use crate::preprocess::Geometry;
use inferq_core::manifest::{Coords, KeypointFormat, ModelManifest, PersonBox};

/// Model-input pixels from the manifest's coordinate unit.
fn to_input_px(manifest: &ModelManifest, x: f32, y: f32) -> (f32, f32) {
    match manifest.output.coords.unwrap_or(Coords::Normalized) {
        Coords::Normalized => (
            x * manifest.input.width as f32,
            y * manifest.input.height as f32,
        ),
        Coords::Pixels => (x, y),
    }
}

/// Clamps a source-image point to the image.
fn clamp(g: &Geometry, (x, y): (f32, f32)) -> (f32, f32) {
    (
        x.clamp(0.0, g.source_width as f32),
        y.clamp(0.0, g.source_height as f32),
    )
}

/// Reads `(y, x, score)` or `(x, y, score)` triples: one person's points,
/// or with `output.persons` one row of points (and a box) per person.
pub fn keypoints(
    values: &[f32],
    manifest: &ModelManifest,
    g: &Geometry,
) -> Result<Prediction, OutputError> {
    let o = &manifest.output;
    if let Some(rows) = o.persons {
        return persons(values, rows, manifest, g);
    }
    check_points(values.len(), o.keypoints.len())?;
    Ok(Prediction::Keypoints {
        keypoints: points(values, manifest, g),
        skeleton: o.skeleton.clone(),
        persons: None,
    })
}

/// `len` values must be whole triples, as many as the manifest names.
fn check_points(len: usize, named: usize) -> Result<(), OutputError> {
    if len == 0 || !len.is_multiple_of(3) {
        return Err(OutputError(format!(
            "{len} values are not (y, x, score) triples"
        )));
    }
    if named != 0 && named != len / 3 {
        return Err(OutputError(format!(
            "{} keypoints in the output but {named} names in the manifest",
            len / 3
        )));
    }
    Ok(())
}

/// The triples of `values` as named points in source pixels, those below
/// the score threshold left out.
fn points(values: &[f32], manifest: &ModelManifest, g: &Geometry) -> Vec<Keypoint> {
    let o = &manifest.output;
    values
        .chunks_exact(3)
        .enumerate()
        .map(|(i, t)| {
            let (x, y) = match o.keypoint_format() {
                KeypointFormat::YxScore => (t[1], t[0]),
                KeypointFormat::XyScore => (t[0], t[1]),
            };
            let (mx, my) = to_input_px(manifest, x, y);
            let (x, y) = clamp(g, g.to_source(mx, my));
            Keypoint {
                name: o.keypoints.get(i).cloned().unwrap_or_else(|| i.to_string()),
                x,
                y,
                score: t[2],
            }
        })
        .filter(|k| k.score >= o.score_threshold)
        .collect()
}

/// `rows` person rows: points, then the box if the manifest names one.
/// People below `person_score_threshold` are dropped; the rest come best
/// first. Without a box a person's score is the mean of its points' scores.
fn persons(
    values: &[f32],
    rows: usize,
    manifest: &ModelManifest,
    g: &Geometry,
) -> Result<Prediction, OutputError> {
    let o = &manifest.output;
    if rows == 0 || values.is_empty() || !values.len().is_multiple_of(rows) {
        return Err(OutputError(format!(
            "{} values are not {rows} person rows",
            values.len()
        )));
    }
    let row_len = values.len() / rows;
    let box_len = if o.person_box.is_some() {
        PersonBox::LEN
    } else {
        0
    };
    let point_len = row_len.saturating_sub(box_len);
    check_points(point_len, o.keypoints.len())?;
    let mut found: Vec<Person> = Vec::new();
    for row in values.chunks_exact(row_len) {
        let (pts, tail) = row.split_at(point_len);
        let (score, bbox) = match o.person_box {
            Some(format) => {
                let (x1, y1, x2, y2) = match format {
                    PersonBox::YxyxScore => (tail[1], tail[0], tail[3], tail[2]),
                    PersonBox::XyxyScore => (tail[0], tail[1], tail[2], tail[3]),
                };
                let (x1, y1) = clamp(g, g.map_output_point(manifest, x1, y1));
                let (x2, y2) = clamp(g, g.map_output_point(manifest, x2, y2));
                let bbox = BoundingBox {
                    x1: x1.min(x2),
                    y1: y1.min(y2),
                    x2: x1.max(x2),
                    y2: y1.max(y2),
                };
                (tail[4], Some(bbox))
            }
            None => {
                let scores = pts.chunks_exact(3).map(|t| t[2]);
                (scores.sum::<f32>() / (point_len / 3) as f32, None)
            }
        };
        if !score.is_finite() || score < o.person_score_threshold {
            continue;
        }
        found.push(Person {
            score,
            bbox,
            keypoints: points(pts, manifest, g),
        });
    }
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(Prediction::Keypoints {
        keypoints: found
            .first()
            .map(|p| p.keypoints.clone())
            .unwrap_or_default(),
        skeleton: o.skeleton.clone(),
        persons: Some(found),
    })
}

/// Reads `(x1, y1, x2, y2, score, class)` rows, filters by score, applies
/// per-class non-maximum suppression when configured, best first.
pub fn detect(
    values: &[f32],
    manifest: &ModelManifest,
    labels: &[String],
    g: &Geometry,
) -> Result<Prediction, OutputError> {
    let o = &manifest.output;
    if !values.len().is_multiple_of(6) {
        return Err(OutputError(format!(
            "{} values are not rows of 6",
            values.len()
        )));
    }
    let mut found: Vec<Detection> = values
        .chunks_exact(6)
        .filter(|r| r[4].is_finite() && r[4] >= o.score_threshold)
        .map(|r| {
            let (x1, y1) = clamp(g, g.map_output_point(manifest, r[0], r[1]));
            let (x2, y2) = clamp(g, g.map_output_point(manifest, r[2], r[3]));
            let class = r[5].max(0.0).round() as usize;
            Detection {
                class,
                label: labels
                    .get(class)
                    .cloned()
                    .unwrap_or_else(|| class.to_string()),
                score: r[4],
                bbox: BoundingBox {
                    x1: x1.min(x2),
                    y1: y1.min(y2),
                    x2: x1.max(x2),
                    y2: y1.max(y2),
                },
            }
        })
        .collect();
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    if let Some(iou) = o.nms_iou {
        let mut kept: Vec<Detection> = Vec::with_capacity(found.len());
        for d in found {
            if !kept
                .iter()
                .any(|k| k.class == d.class && k.bbox.iou(&d.bbox) > iou)
            {
                kept.push(d);
            }
        }
        found = kept;
    }
    found.truncate(o.max_detections);
    Ok(Prediction::Detection { detections: found })
}

impl Geometry {
    /// A point in the manifest's output unit mapped to source pixels.
    fn map_output_point(&self, manifest: &ModelManifest, x: f32, y: f32) -> (f32, f32) {
        let (mx, my) = to_input_px(manifest, x, y);
        self.to_source(mx, my)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest(output: &str, kind: &str) -> ModelManifest {
        let text = format!(
            "kind = \"{kind}\"\n[input]\nname = \"x\"\ndtype = \"float32\"\nlayout = \"nchw\"\n\
             width = 100\nheight = 50\n[preprocess]\nresize = \"stretch\"\n[output]\n{output}"
        );
        ModelManifest::parse(&text, Path::new("t.toml")).unwrap()
    }

    /// A 200x200 source stretched to 100x50: x doubles, y quadruples.
    fn geometry() -> Geometry {
        Geometry {
            scale_x: 2.0,
            scale_y: 4.0,
            offset_x: 0.0,
            offset_y: 0.0,
            source_width: 200,
            source_height: 200,
        }
    }

    #[test]
    fn normalised_keypoints_map_to_source_pixels() {
        let m = manifest(
            "name = \"k\"\nkeypoints = [\"a\", \"b\"]\nskeleton = [[0, 1]]\nscore_threshold = 0.5",
            "keypoints",
        );
        // (y, x, score): a at (0.5, 0.25), b below the threshold.
        let p = keypoints(&[0.5, 0.25, 0.9, 0.1, 0.1, 0.2], &m, &geometry()).unwrap();
        let Prediction::Keypoints {
            keypoints: points,
            skeleton,
            persons: None,
        } = p
        else {
            panic!("keypoints expected")
        };
        assert_eq!(skeleton, vec![[0, 1]]);
        assert_eq!(points.len(), 1);
        // x = 0.25 * 100 * 2 = 50; y = 0.5 * 50 * 4 = 100.
        assert_eq!(
            (points[0].name.as_str(), points[0].x, points[0].y),
            ("a", 50.0, 100.0)
        );
        assert!(keypoints(&[1.0, 2.0], &m, &geometry()).is_err());
    }

    #[test]
    fn person_rows_become_people_best_first_with_boxes() {
        let m = manifest(
            "name = \"k\"\nkeypoints = [\"a\", \"b\"]\nskeleton = [[0, 1]]\n\
             persons = 3\nbox = \"yxyx_score\"\nperson_score_threshold = 0.3",
            "keypoints",
        );
        #[rustfmt::skip]
        let rows = [
            // a (y, x, s), b (y, x, s), box (ymin, xmin, ymax, xmax, score)
            0.5, 0.25, 0.9,   0.1, 0.1, 0.2,   0.1, 0.2, 0.6, 0.4, 0.4,
            0.2, 0.5, 0.8,    0.3, 0.6, 0.7,   0.0, 0.0, 1.0, 1.0, 0.9,
            0.9, 0.9, 0.9,    0.9, 0.9, 0.9,   0.0, 0.0, 0.1, 0.1, 0.1, // not a person
        ];
        let Prediction::Keypoints {
            keypoints: best,
            skeleton,
            persons: Some(people),
        } = keypoints(&rows, &m, &geometry()).unwrap()
        else {
            panic!("persons expected")
        };
        assert_eq!(skeleton, vec![[0, 1]]);
        assert_eq!(people.len(), 2, "the 0.1 row is dropped");
        assert_eq!((people[0].score, people[1].score), (0.9, 0.4));
        // The best person's points are repeated for one-person clients.
        assert_eq!(best, people[0].keypoints);
        let a = &people[0].keypoints[0];
        assert_eq!((a.name.as_str(), a.x, a.y), ("a", 100.0, 40.0));
        // The second person's box: x 0.2..0.4 of 100 px doubled, y 0.1..0.6 of 50 px x4.
        let b = people[1].bbox.unwrap();
        for (got, want) in [(b.x1, 40.0), (b.y1, 20.0), (b.x2, 80.0), (b.y2, 120.0)] {
            assert!((got - want).abs() < 1e-3, "box {b:?}");
        }
        // Per-point threshold still applies inside a person: none set here.
        assert_eq!(people[1].keypoints.len(), 2);
        // Rows that do not divide evenly, or points that do not match the names.
        assert!(keypoints(&rows[..32], &m, &geometry()).is_err());
        assert!(keypoints(&[0.0; 3 * 8], &m, &geometry()).is_err());
    }

    #[test]
    fn person_rows_without_a_box_score_by_their_points() {
        let m = manifest("name = \"k\"\npersons = 2", "keypoints");
        let rows = [0.5, 0.5, 0.2, 0.5, 0.5, 0.4, 0.1, 0.1, 0.9, 0.1, 0.1, 0.7];
        let Prediction::Keypoints {
            persons: Some(people),
            ..
        } = keypoints(&rows, &m, &geometry()).unwrap()
        else {
            panic!("persons expected")
        };
        assert_eq!(people.len(), 2);
        assert!((people[0].score - 0.8).abs() < 1e-6 && people[0].bbox.is_none());
        assert!((people[1].score - 0.3).abs() < 1e-6);
    }

    #[test]
    fn detections_are_filtered_suppressed_and_mapped() {
        let m = manifest(
            "name = \"d\"\ncoords = \"pixels\"\nscore_threshold = 0.3\nnms_iou = 0.5",
            "detection",
        );
        let labels = vec!["cat".to_string(), "dog".to_string()];
        #[rustfmt::skip]
        let rows = [
            10.0, 10.0, 50.0, 40.0, 0.9, 1.0, // dog
            12.0, 10.0, 50.0, 40.0, 0.8, 1.0, // same dog, suppressed
            12.0, 10.0, 50.0, 40.0, 0.7, 0.0, // overlapping cat: other class, kept
            60.0, 5.0, 90.0, 45.0, 0.1, 0.0,  // below threshold
        ];
        let Prediction::Detection { detections } = detect(&rows, &m, &labels, &geometry()).unwrap()
        else {
            panic!("detections expected")
        };
        assert_eq!(detections.len(), 2);
        assert_eq!(
            (detections[0].label.as_str(), detections[0].score),
            ("dog", 0.9)
        );
        assert_eq!(
            detections[0].bbox,
            BoundingBox {
                x1: 20.0,
                y1: 40.0,
                x2: 100.0,
                y2: 160.0
            }
        );
        assert_eq!(detections[1].label, "cat");
    }

    #[test]
    fn iou_of_identical_and_disjoint_boxes() {
        let a = BoundingBox {
            x1: 0.0,
            y1: 0.0,
            x2: 10.0,
            y2: 10.0,
        };
        let b = BoundingBox {
            x1: 20.0,
            y1: 20.0,
            x2: 30.0,
            y2: 30.0,
        };
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&b), 0.0);
    }
}
