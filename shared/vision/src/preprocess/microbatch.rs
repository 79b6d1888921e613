//! Stacking preprocessed images along the batch axis, for dynamic batching.
//!
//! The stacked tensor's buffer is kept and reused from batch to batch, like
//! the single-image buffers of [`super::Preprocessor`], so batching adds no
//! allocation per job once a thread has seen its largest batch.

use super::{InputTensor, TensorData};

/// Images of one model stacked into a single `N x ...` input tensor.
#[derive(Debug)]
pub struct BatchTensor {
    tensor: InputTensor,
}

impl Default for BatchTensor {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchTensor {
    pub fn new() -> Self {
        BatchTensor {
            tensor: InputTensor {
                shape: [0; 4],
                data: TensorData::F32(Vec::new()),
            },
        }
    }

    /// Empties the batch, keeping its buffer.
    pub fn clear(&mut self) {
        self.tensor.shape[0] = 0;
        match &mut self.tensor.data {
            TensorData::F32(v) => v.clear(),
            TensorData::U8(v) => v.clear(),
            TensorData::I32(v) => v.clear(),
        }
    }

    /// Number of images in the batch.
    pub fn len(&self) -> usize {
        self.tensor.shape[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one image (a tensor of batch size 1). The first image fixes
    /// the per-image shape and element type of the batch.
    ///
    /// # Panics
    /// If `item` is not a single image, or differs in shape or element type
    /// from the images already in the batch: all images of a batch are
    /// preprocessed for the same model, so that is a bug.
    pub fn push(&mut self, item: &InputTensor) {
        assert_eq!(item.shape[0], 1, "a batch is built from single images");
        if self.is_empty() {
            self.tensor.shape = item.shape;
            self.tensor.shape[0] = 0;
            let same_type =
                std::mem::discriminant(&self.tensor.data) == std::mem::discriminant(&item.data);
            if !same_type {
                self.tensor.data = match item.data {
                    TensorData::F32(_) => TensorData::F32(Vec::new()),
                    TensorData::U8(_) => TensorData::U8(Vec::new()),
                    TensorData::I32(_) => TensorData::I32(Vec::new()),
                };
            }
        }
        assert_eq!(
            self.tensor.shape[1..],
            item.shape[1..],
            "images of a batch must have the same shape"
        );
        match (&mut self.tensor.data, &item.data) {
            (TensorData::F32(all), TensorData::F32(one)) => all.extend_from_slice(one),
            (TensorData::U8(all), TensorData::U8(one)) => all.extend_from_slice(one),
            (TensorData::I32(all), TensorData::I32(one)) => all.extend_from_slice(one),
            _ => panic!("images of a batch must have the same element type"),
        }
        self.tensor.shape[0] += 1;
    }

    /// The stacked tensor (`shape[0]` = number of images).
    pub fn tensor(&self) -> &InputTensor {
        &self.tensor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(value: f32) -> InputTensor {
        InputTensor {
            shape: [1, 3, 2, 2],
            data: TensorData::F32(vec![value; 12]),
        }
    }

    #[test]
    fn stacks_images_in_order_and_reuses_the_buffer() {
        let mut batch = BatchTensor::new();
        batch.push(&image(1.0));
        batch.push(&image(2.0));
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.tensor().shape, [2, 3, 2, 2]);
        let TensorData::F32(data) = &batch.tensor().data else {
            panic!("f32 expected")
        };
        assert_eq!(&data[..12], &[1.0; 12]);
        assert_eq!(&data[12..], &[2.0; 12]);
        let capacity = data.capacity();

        batch.clear();
        assert!(batch.is_empty());
        batch.push(&image(3.0));
        assert_eq!(batch.tensor().shape, [1, 3, 2, 2]);
        let TensorData::F32(data) = &batch.tensor().data else {
            panic!("f32 expected")
        };
        assert_eq!(data.as_slice(), &[3.0; 12]);
        assert_eq!(data.capacity(), capacity, "buffer kept");
    }

    #[test]
    fn switches_element_type_when_the_model_changes() {
        let mut batch = BatchTensor::new();
        batch.push(&image(1.0));
        batch.clear();
        batch.push(&InputTensor {
            shape: [1, 2, 2, 3],
            data: TensorData::U8(vec![7; 12]),
        });
        assert_eq!(batch.tensor().shape, [1, 2, 2, 3]);
        assert!(matches!(&batch.tensor().data, TensorData::U8(v) if v == &vec![7; 12]));
    }

    #[test]
    #[should_panic(expected = "same shape")]
    fn refuses_mixed_shapes() {
        let mut batch = BatchTensor::new();
        batch.push(&image(1.0));
        batch.push(&InputTensor {
            shape: [1, 3, 4, 4],
            data: TensorData::F32(vec![0.0; 48]),
        });
    }
}
