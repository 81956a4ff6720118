//! A dense row-major matrix of f64: one row per image, one column per embedding dimension —
//! the input every analysis here shares, checked rectangular once.

/// `rows × cols` values, row `i` at `data[i * cols..(i + 1) * cols]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

/// Rows of different lengths.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {row} has {len} values, row 0 has {cols}")]
pub struct RaggedRows {
    pub row: usize,
    pub len: usize,
    pub cols: usize,
}

impl Matrix {
    /// Stacks `rows` (all the same length; no rows gives a 0 × 0 matrix).
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self, RaggedRows> {
        let cols = rows.first().map_or(0, Vec::len);
        if let Some((row, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != cols) {
            return Err(RaggedRows { row, len: r.len(), cols });
        }
        Ok(Self { rows: rows.len(), cols, data: rows.concat() })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All values, row after row.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// `‖row i − row j‖²`.
    pub fn squared_distance(&self, i: usize, j: usize) -> f64 {
        self.row(i).iter().zip(self.row(j)).map(|(a, b)| (a - b) * (a - b)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_distances() -> Result<(), RaggedRows> {
        let m = Matrix::from_rows(&[vec![0.0, 0.0], vec![3.0, 4.0]])?;
        assert_eq!((m.rows(), m.cols()), (2, 2));
        assert_eq!(m.row(1), &[3.0, 4.0]);
        assert_eq!(m.squared_distance(0, 1), 25.0);
        assert_eq!(
            Matrix::from_rows(&[vec![1.0], vec![1.0, 2.0]]),
            Err(RaggedRows { row: 1, len: 2, cols: 1 })
        );
        assert_eq!(Matrix::from_rows(&[])?.rows(), 0);
        Ok(())
    }
}
