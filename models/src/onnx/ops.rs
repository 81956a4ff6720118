//! Elementwise and shape operators of the [`GraphBuilder`]: activations and elementwise maths,
//! comparisons and `Where`, and shape arithmetic (`Shape`, `Slice`, `Unsqueeze`, `Squeeze`,
//! `Range`, `Expand`, `Cast`, dynamic `Reshape`, `Flatten`, `Pad`), each computing its value with
//! libtorch when tracing. Indexing and detection operators are in [`super::ops_detect`].
//!
//! Shape values are int64 1-D tensors (a single dimension is `[1]`, not a scalar) so they
//! concatenate; [`GraphBuilder::squeeze`] makes the scalars `Range` needs.

use tch::{Kind, Tensor};

use super::OnnxError;
use super::graph::{Attr, GraphBuilder, Value};
use super::proto::DataType;

/// Broadcast shape of two shapes (numpy rules), for traced `Expand`.
fn broadcast(a: &[i64], b: &[i64]) -> Vec<i64> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
            let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
            if da == 1 { db } else { da }
        })
        .collect()
}

/// The int64 values of a traced shape tensor.
fn ints(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.to_kind(Kind::Int64).reshape([-1])).unwrap_or_default()
}

impl GraphBuilder {
    fn unary(
        &mut self,
        op: &str,
        hint: &str,
        x: &Value,
        f: impl FnOnce(&Tensor) -> Tensor,
    ) -> Result<Value, OnnxError> {
        self.node1(op, hint, &[x], vec![], |xs| f(xs[0]))
    }

    /// A float32 scalar (rank-0) constant.
    pub fn scalar_f32(&mut self, hint: &str, v: f32) -> Result<Value, OnnxError> {
        self.constant(hint, &Tensor::from(v))
    }

    /// An int64 scalar (rank-0) constant.
    pub fn scalar_i64(&mut self, hint: &str, v: i64) -> Result<Value, OnnxError> {
        self.constant(hint, &Tensor::from(v))
    }

    /// `Relu`.
    pub fn relu(&mut self, hint: &str, x: &Value) -> Result<Value, OnnxError> {
        self.unary("Relu", hint, x, Tensor::relu)
    }

    /// `Exp`.
    pub fn exp(&mut self, hint: &str, x: &Value) -> Result<Value, OnnxError> {
        self.unary("Exp", hint, x, Tensor::exp)
    }

    /// `Log` (natural).
    pub fn log(&mut self, hint: &str, x: &Value) -> Result<Value, OnnxError> {
        self.unary("Log", hint, x, Tensor::log)
    }

    /// `Sqrt`.
    pub fn sqrt(&mut self, hint: &str, x: &Value) -> Result<Value, OnnxError> {
        self.unary("Sqrt", hint, x, Tensor::sqrt)
    }

    /// `Floor`.
    pub fn floor(&mut self, hint: &str, x: &Value) -> Result<Value, OnnxError> {
        self.unary("Floor", hint, x, Tensor::floor)
    }

    /// `Min` of two (broadcasting; float or int64).
    pub fn min(&mut self, hint: &str, a: &Value, b: &Value) -> Result<Value, OnnxError> {
        self.node1("Min", hint, &[a, b], vec![], |xs| xs[0].minimum(xs[1]))
    }

    /// `Max` of two (broadcasting; float or int64).
    pub fn max(&mut self, hint: &str, a: &Value, b: &Value) -> Result<Value, OnnxError> {
        self.node1("Max", hint, &[a, b], vec![], |xs| xs[0].maximum(xs[1]))
    }

    /// `Clip` between rank-0 `lo` and `hi` (`min(max(x, lo), hi)`).
    pub fn clip(
        &mut self,
        hint: &str,
        x: &Value,
        lo: &Value,
        hi: &Value,
    ) -> Result<Value, OnnxError> {
        self.node1("Clip", hint, &[x, lo, hi], vec![], |xs| xs[0].maximum(xs[1]).minimum(xs[2]))
    }

    /// `Mod` (integer, `fmod = 0`: the sign of the divisor).
    pub fn modulo(&mut self, hint: &str, a: &Value, b: &Value) -> Result<Value, OnnxError> {
        self.node1("Mod", hint, &[a, b], vec![], |xs| xs[0].remainder_tensor(xs[1]))
    }

    /// `Greater` (`a > b`, bool).
    pub fn greater(&mut self, hint: &str, a: &Value, b: &Value) -> Result<Value, OnnxError> {
        self.node1("Greater", hint, &[a, b], vec![], |xs| xs[0].gt_tensor(xs[1]))
    }

    /// `GreaterOrEqual` (`a >= b`, bool).
    pub fn greater_or_equal(
        &mut self,
        hint: &str,
        a: &Value,
        b: &Value,
    ) -> Result<Value, OnnxError> {
        self.node1("GreaterOrEqual", hint, &[a, b], vec![], |xs| xs[0].ge_tensor(xs[1]))
    }

    /// `Equal` (bool).
    pub fn equal(&mut self, hint: &str, a: &Value, b: &Value) -> Result<Value, OnnxError> {
        self.node1("Equal", hint, &[a, b], vec![], |xs| xs[0].eq_tensor(xs[1]))
    }

    /// `And` of two bool tensors.
    pub fn and(&mut self, hint: &str, a: &Value, b: &Value) -> Result<Value, OnnxError> {
        self.node1("And", hint, &[a, b], vec![], |xs| xs[0].logical_and(xs[1]))
    }

    /// `Where(cond, a, b)`: `a` where `cond`, else `b` (broadcasting).
    pub fn where_(
        &mut self,
        hint: &str,
        cond: &Value,
        a: &Value,
        b: &Value,
    ) -> Result<Value, OnnxError> {
        self.node1("Where", hint, &[cond, a, b], vec![], |xs| xs[1].where_self(xs[0], xs[2]))
    }

    /// `Cast` to float32 or int64.
    pub fn cast(&mut self, hint: &str, x: &Value, to: DataType) -> Result<Value, OnnxError> {
        let kind = if to == DataType::Int64 { Kind::Int64 } else { Kind::Float };
        self.node1("Cast", hint, &[x], vec![("to", Attr::Int(to as i64))], |xs| xs[0].to_kind(kind))
    }

    /// `Shape`: int64 `[rank]`.
    pub fn shape(&mut self, hint: &str, x: &Value) -> Result<Value, OnnxError> {
        self.node1("Shape", hint, &[x], vec![], |xs| {
            Tensor::from_slice(&xs[0].size()).to_device(xs[0].device())
        })
    }

    /// `Slice` with constant `starts`, `ends` (clamped as ONNX does; `i64::MAX` for "to the
    /// end") and `axes`, step 1.
    pub fn slice(
        &mut self,
        hint: &str,
        x: &Value,
        starts: &[i64],
        ends: &[i64],
        axes: &[i64],
    ) -> Result<Value, OnnxError> {
        let s = self.const_i64(&format!("{hint}.starts"), starts)?;
        let e = self.const_i64(&format!("{hint}.ends"), ends)?;
        let a = self.const_i64(&format!("{hint}.axes"), axes)?;
        let spec: Vec<(i64, i64, i64)> =
            axes.iter().zip(starts.iter().zip(ends)).map(|(&a, (&s, &e))| (a, s, e)).collect();
        self.node1("Slice", hint, &[x, &s, &e, &a], vec![], |xs| {
            spec.iter().fold(xs[0].shallow_clone(), |t, &(a, s, e)| t.slice(a, s, e, 1))
        })
    }

    /// Dimension `i` of a shape value `[rank]` as `[1]`.
    pub fn dim(&mut self, hint: &str, shape: &Value, i: i64) -> Result<Value, OnnxError> {
        self.slice(hint, shape, &[i], &[i + 1], &[0])
    }

    /// `Unsqueeze` at constant `axes` (opset 13: axes as an input).
    pub fn unsqueeze(&mut self, hint: &str, x: &Value, axes: &[i64]) -> Result<Value, OnnxError> {
        let a = self.const_i64(&format!("{hint}.axes"), axes)?;
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        self.node1("Unsqueeze", hint, &[x, &a], vec![], |xs| {
            sorted.iter().fold(xs[0].shallow_clone(), |t, &ax| t.unsqueeze(ax))
        })
    }

    /// `Squeeze` at constant `axes`.
    pub fn squeeze(&mut self, hint: &str, x: &Value, axes: &[i64]) -> Result<Value, OnnxError> {
        let a = self.const_i64(&format!("{hint}.axes"), axes)?;
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        self.node1("Squeeze", hint, &[x, &a], vec![], |xs| {
            sorted.iter().rev().fold(xs[0].shallow_clone(), |t, &ax| t.squeeze_dim(ax))
        })
    }

    /// `Range(start, limit, delta)` of int64 scalars.
    pub fn range(
        &mut self,
        hint: &str,
        start: &Value,
        limit: &Value,
        delta: &Value,
    ) -> Result<Value, OnnxError> {
        self.node1("Range", hint, &[start, limit, delta], vec![], |xs| {
            let v = |t: &Tensor| t.int64_value(&[]);
            Tensor::arange_start_step(v(xs[0]), v(xs[1]), v(xs[2]), (Kind::Int64, xs[0].device()))
        })
    }

    /// `Expand` to `shape` (an int64 1-D value; bidirectional broadcasting).
    pub fn expand(&mut self, hint: &str, x: &Value, shape: &Value) -> Result<Value, OnnxError> {
        self.node1("Expand", hint, &[x, shape], vec![], |xs| {
            let target = broadcast(&xs[0].size(), &ints(xs[1]));
            xs[0].expand(target.as_slice(), false).contiguous()
        })
    }

    /// `Reshape` to a shape value (`0` copies the input's dimension, `-1` is inferred once).
    pub fn reshape_to(&mut self, hint: &str, x: &Value, shape: &Value) -> Result<Value, OnnxError> {
        self.node1("Reshape", hint, &[x, shape], vec![], |xs| {
            let s = xs[0].size();
            let target: Vec<i64> = ints(xs[1])
                .iter()
                .enumerate()
                .map(|(i, &d)| if d == 0 { s.get(i).copied().unwrap_or(0) } else { d })
                .collect();
            xs[0].reshape(target.as_slice())
        })
    }

    /// [`GraphBuilder::reshape_to`] with a constant shape (which may hold `0`s).
    pub fn reshape0(&mut self, hint: &str, x: &Value, shape: &[i64]) -> Result<Value, OnnxError> {
        let s = self.const_i64(&format!("{hint}.shape"), shape)?;
        self.reshape_to(hint, x, &s)
    }

    /// `Flatten` at `axis`: `[prod(d[..axis]), prod(d[axis..])]`.
    pub fn flatten(&mut self, hint: &str, x: &Value, axis: i64) -> Result<Value, OnnxError> {
        self.node1("Flatten", hint, &[x], vec![("axis", Attr::Int(axis))], |xs| {
            let lead: i64 = xs[0].size()[..axis as usize].iter().product();
            xs[0].reshape([lead, -1])
        })
    }

    /// `Pad` (constant mode) with an int64 `pads` value (`[begins..., ends...]`) and a rank-0
    /// fill `value`.
    pub fn pad(
        &mut self,
        hint: &str,
        x: &Value,
        pads: &Value,
        value: &Value,
    ) -> Result<Value, OnnxError> {
        let attrs = vec![("mode", Attr::Str("constant".into()))];
        self.node1("Pad", hint, &[x, pads, value], attrs, |xs| {
            let p = ints(xs[1]);
            let r = p.len() / 2;
            // torch orders pads from the last dimension: (begin, end) pairs.
            let torch_pads: Vec<i64> = (0..r).rev().flat_map(|d| [p[d], p[d + r]]).collect();
            let fill = xs[2].double_value(&[]);
            xs[0].pad(torch_pads.as_slice(), "constant", fill)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tch::Device;

    #[test]
    fn traced_shape_and_index_ops() {
        let x = Tensor::arange(24, (Kind::Float, Device::Cpu)).view([2, 3, 4]);
        let mut g = GraphBuilder::traced("t", Device::Cpu);
        let i = g.input("x", &[], Some(&x)).unwrap();
        let s = g.shape("s", &i).unwrap();
        let d = g.dim("d", &s, 2).unwrap();
        let pads = g.const_i64("p", &[0, 0, 0, 0, 1, 2]).unwrap();
        let fill = g.scalar_f32("v", -1.0).unwrap();
        let p = g.pad("pad", &i, &pads, &fill).unwrap();
        let k = g.const_i64("k", &[2]).unwrap();
        let (v, _) = g.topk("top", &i, &k, 2).unwrap();
        let first = g.slice("first", &i, &[0], &[1], &[2]).unwrap(); // [2, 3, 1]
        let first = g.reshape0("first2", &first, &[0, -1]).unwrap(); // [2, 3]
        let (_, idx) = g.topk("top2", &first, &k, 1).unwrap(); // [2, 2]
        let rows = g.gather_rows("rows", &i, &idx).unwrap(); // [2, 2, 4]
        assert_eq!(ints(g.value(&d).unwrap()), vec![4]);
        assert_eq!(g.value(&p).unwrap().size(), [2, 4, 6]);
        assert_eq!(g.value(&p).unwrap().double_value(&[1, 3, 5]), -1.0);
        assert_eq!(g.value(&p).unwrap().double_value(&[1, 2, 3]), 23.0);
        assert_eq!(g.value(&v).unwrap().double_value(&[1, 2, 0]), 23.0);
        assert_eq!(ints(g.value(&idx).unwrap()), vec![2, 1, 2, 1]);
        assert_eq!(g.value(&rows).unwrap().size(), [2, 2, 4]);
        assert_eq!(g.value(&rows).unwrap().double_value(&[1, 0, 3]), 23.0);
        // Integer Div truncates towards zero, as ONNX's does.
        let a = g.const_i64("a", &[7, -7, 6]).unwrap();
        let b = g.const_i64("b", &[2, 2, 3]).unwrap();
        let q = g.div("q", &a, &b).unwrap();
        assert_eq!(ints(g.value(&q).unwrap()), vec![3, -3, 2]);
    }
}
