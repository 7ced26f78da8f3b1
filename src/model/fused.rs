//! Weights that inference reads as one tensor while checkpoints and training see the Hugging Face
//! variables: q/k/v in one matrix, gate/up in one, every layer's q/k norm weights in one table.
//!
//! The variables are made views of the fused storage (`set_data`), so a checkpoint load, an
//! optimiser step or a reference-model copy writes through to what inference reads, with no
//! second copy of the weights and nothing to refresh. Autograd does not see through that
//! sharing, so while gradients are recorded the fused weight is rebuilt from the variables
//! (`cat`), which keeps training exact; without gradients (decoding) it costs nothing. A
//! conversion that replaces the variables' storage (`VarStore::set_kind`) is noticed at the
//! next forward, and the fused storage is rebuilt from them once.

use std::cell::RefCell;

use tch::Tensor;

#[allow(unsafe_code)]
mod ffi {
    extern "C" {
        pub fn t3d_grad_enabled() -> std::ffi::c_int;
    }
}

/// Whether autograd records operations on this thread (libtorch's grad mode).
pub fn grad_enabled() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: reads a thread-local flag.
    let enabled = unsafe { ffi::t3d_grad_enabled() };
    enabled != 0
}

/// Whether `view` still lies at the start of `storage` (same kind, device and data).
fn shares_start(view: &Tensor, storage: &Tensor) -> bool {
    view.kind() == storage.kind()
        && view.device() == storage.device()
        && view.data_ptr() == storage.data_ptr()
}

/// A weight whose rows are several variables, stacked.
#[derive(Debug)]
pub struct FusedRows {
    parts: Vec<Tensor>,
    fused: RefCell<Tensor>,
}

impl FusedRows {
    /// Stacks `parts` (2-D, same width, kind and device) into one tensor and makes each part a
    /// view of its rows.
    pub fn new(mut parts: Vec<Tensor>) -> Self {
        let fused = stack_rows(&mut parts);
        Self {
            parts,
            fused: RefCell::new(fused),
        }
    }

    /// The stacked weight: the shared storage, or a differentiable `cat` while gradients flow
    /// to the parts.
    pub fn weight(&self) -> Tensor {
        if grad_enabled() && self.parts[0].requires_grad() {
            return Tensor::cat(&self.parts, 0);
        }
        if !shares_start(&self.parts[0], &self.fused.borrow()) {
            let mut parts: Vec<Tensor> = self.parts.iter().map(Tensor::shallow_clone).collect();
            *self.fused.borrow_mut() = stack_rows(&mut parts);
        }
        self.fused.borrow().shallow_clone()
    }
}

/// One tensor holding `parts`' rows, each part made a view of its own.
fn stack_rows(parts: &mut [Tensor]) -> Tensor {
    let _guard = tch::no_grad_guard();
    let rows: i64 = parts.iter().map(|p| p.size()[0]).sum();
    let first = &parts[0];
    let fused = Tensor::empty([rows, first.size()[1]], (first.kind(), first.device()));
    let mut offset = 0;
    for part in parts {
        let n = part.size()[0];
        let slot = fused.narrow(0, offset, n);
        slot.shallow_clone().copy_(part);
        part.set_data(&slot);
        offset += n;
    }
    fused
}

/// Every layer's per-head q/k RMSNorm weights as one `(layers, Hq + Hkv, D)` table: row
/// `[l, h]` is layer l's q-norm weight for `h < Hq`, its k-norm weight after. The variables are
/// views of rows `[l, 0]` and `[l, Hq]`; [`Self::sync`] copies them over the other rows.
#[derive(Debug)]
pub struct NormTable {
    storage: RefCell<NormStorage>,
    q_heads: i64,
    kv_heads: i64,
    variables: Vec<(Tensor, Tensor)>,
}

/// The table, where each row comes from, and each layer's rows (views made once).
#[derive(Debug)]
struct NormStorage {
    table: Tensor,
    sources: Tensor,
    layers: Vec<Tensor>,
}

impl NormTable {
    /// Builds the table from each layer's `(q_norm, k_norm)` weights (`(D,)` each).
    pub fn new(mut variables: Vec<(Tensor, Tensor)>, q_heads: i64, kv_heads: i64) -> Self {
        let storage = NormStorage::build(&mut variables, q_heads, kv_heads);
        Self {
            storage: RefCell::new(storage),
            q_heads,
            kv_heads,
            variables,
        }
    }

    /// Spreads each layer's variables over its rows (they may have been written since): two
    /// ops for the whole model, once per forward without gradients. Rebuilds the table if the
    /// variables' storage was replaced.
    pub fn sync(&self) {
        if !shares_start(&self.variables[0].0, &self.storage.borrow().table) {
            let mut variables: Vec<(Tensor, Tensor)> = self
                .variables
                .iter()
                .map(|(q, k)| (q.shallow_clone(), k.shallow_clone()))
                .collect();
            *self.storage.borrow_mut() =
                NormStorage::build(&mut variables, self.q_heads, self.kv_heads);
        }
        let storage = self.storage.borrow();
        let spread = storage.table.index_select(1, &storage.sources);
        storage.table.shallow_clone().copy_(&spread);
    }

    /// Layer `layer`'s `(Hq + Hkv, D)` weights; differentiable while gradients are recorded.
    pub fn layer(&self, layer: usize) -> Tensor {
        let (q, k) = &self.variables[layer];
        if grad_enabled() && q.requires_grad() {
            let dim = q.size()[0];
            Tensor::cat(
                &[
                    q.unsqueeze(0).expand([self.q_heads, dim], false),
                    k.unsqueeze(0).expand([self.kv_heads, dim], false),
                ],
                0,
            )
        } else {
            self.storage.borrow().layers[layer].shallow_clone()
        }
    }
}

impl NormStorage {
    /// The table over `variables`, each made a view of its first row in its layer.
    fn build(variables: &mut [(Tensor, Tensor)], q_heads: i64, kv_heads: i64) -> Self {
        let _guard = tch::no_grad_guard();
        let (q0, _) = &variables[0];
        let (dim, kind, device) = (q0.size()[0], q0.kind(), q0.device());
        let layers = variables.len() as i64;
        let table = Tensor::empty([layers, q_heads + kv_heads, dim], (kind, device));
        for (l, (q, k)) in variables.iter_mut().enumerate() {
            let rows = table.get(l as i64);
            rows.narrow(0, 0, q_heads).copy_(&q.unsqueeze(0));
            rows.narrow(0, q_heads, kv_heads).copy_(&k.unsqueeze(0));
            q.set_data(&rows.get(0));
            k.set_data(&rows.get(q_heads));
        }
        let sources: Vec<i64> = (0..q_heads + kv_heads)
            .map(|h| if h < q_heads { 0 } else { q_heads })
            .collect();
        Self {
            layers: (0..layers).map(|l| table.get(l)).collect(),
            sources: Tensor::from_slice(&sources).to_device(device),
            table,
        }
    }
}
