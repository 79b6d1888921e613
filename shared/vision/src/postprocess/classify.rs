//! Classification (top-k with optional softmax) and embeddings.

use super::{ClassScore, OutputError, Prediction};

/// Top-k classes, with a numerically stable softmax when asked for.
pub fn classify(
    values: &[f32],
    softmax: bool,
    labels: &[String],
    k: usize,
) -> Result<Prediction, OutputError> {
    if values.is_empty() {
        return Err(OutputError("empty classification output".into()));
    }
    if values.iter().any(|v| v.is_nan()) {
        return Err(OutputError("output contains NaN".into()));
    }
    if !labels.is_empty() && labels.len() != values.len() {
        return Err(OutputError(format!(
            "{} classes but {} labels",
            values.len(),
            labels.len()
        )));
    }
    let probs: Vec<f32> = if softmax {
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = values.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        exps.into_iter().map(|e| e / sum).collect()
    } else {
        values.to_vec()
    };
    let mut order: Vec<usize> = (0..probs.len()).collect();
    let k = k.min(order.len());
    // Partial selection is O(n) and 1000 classes is small, but the sort is
    // only over the k survivors.
    order.select_nth_unstable_by(k - 1, |a, b| probs[*b].total_cmp(&probs[*a]));
    order.truncate(k);
    order.sort_by(|a, b| probs[*b].total_cmp(&probs[*a]).then(a.cmp(b)));
    let top_k = order
        .into_iter()
        .map(|i| ClassScore {
            index: i,
            label: labels.get(i).cloned().unwrap_or_else(|| i.to_string()),
            probability: probs[i],
        })
        .collect();
    Ok(Prediction::Classification { top_k })
}

/// A feature vector, optionally L2-normalised.
pub fn embed(values: &[f32], normalize: bool) -> Result<Prediction, OutputError> {
    if values.is_empty() {
        return Err(OutputError("empty embedding".into()));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(OutputError("embedding contains NaN or infinity".into()));
    }
    let mut out = values.to_vec();
    if normalize {
        let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            out.iter_mut().for_each(|v| *v /= norm);
        }
    }
    Ok(Prediction::Embedding {
        dimensions: out.len(),
        normalized: normalize,
        values: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_is_l2_normalised() {
        let Prediction::Embedding {
            values, dimensions, ..
        } = embed(&[3.0, 4.0, 0.0], true).unwrap()
        else {
            panic!("embedding expected")
        };
        assert_eq!(dimensions, 3);
        assert_eq!(values, vec![0.6, 0.8, 0.0]);
        assert!(embed(&[f32::NAN], false).is_err());
    }

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn softmax_top_k_exact() {
        // logits (ln 1, ln 2, ln 3, ln 4): probabilities 0.1, 0.2, 0.3, 0.4.
        let logits: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].iter().map(|v| v.ln()).collect();
        let Prediction::Classification { top_k } = classify(&logits, true, &labels(4), 2).unwrap()
        else {
            panic!("classification expected")
        };
        assert_eq!(top_k.len(), 2);
        assert_eq!(top_k[0].index, 3);
        assert_eq!(top_k[0].label, "c3");
        assert!((top_k[0].probability - 0.4).abs() < 1e-6);
        assert_eq!(top_k[1].index, 2);
        assert!((top_k[1].probability - 0.3).abs() < 1e-6);
    }

    #[test]
    fn no_softmax_passes_values_and_k_is_clamped() {
        let Prediction::Classification { top_k } =
            classify(&[0.5, 0.25, 0.25], false, &[], 10).unwrap()
        else {
            panic!("classification expected")
        };
        assert_eq!(top_k.len(), 3);
        assert_eq!(top_k[0].label, "0");
        assert_eq!(top_k[0].probability, 0.5);
        // Ties keep index order.
        assert_eq!((top_k[1].index, top_k[2].index), (1, 2));
    }

    #[test]
    fn mismatched_labels_and_nan_are_errors() {
        assert!(classify(&[1.0, 2.0], true, &labels(3), 1).is_err());
        assert!(classify(&[f32::NAN], true, &[], 1).is_err());
        assert!(classify(&[], true, &[], 1).is_err());
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let Prediction::Classification { top_k } = classify(&[1000.0, 0.0], true, &[], 1).unwrap()
        else {
            panic!("classification expected")
        };
        assert!((top_k[0].probability - 1.0).abs() < 1e-6);
    }
}
