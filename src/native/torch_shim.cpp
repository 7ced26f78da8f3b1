// What tch does not wrap of libtorch, compiled by build.rs against the same headers.
//
// An ATen op counter: a thread-local RecordFunction callback that tallies the ops the calling
// thread dispatches. An op entered while no other op of this thread is running is "top-level"
// (what our Rust code asked for); ops it calls in turn are "nested". A top-level op is a "view"
// when it works in place of nothing: not an in-place op (name ending in '_') and every tensor it
// returns shares storage with one of its inputs (view, narrow, transpose, as_strided, split,
// a reshape that needed no copy). Views launch no kernel; everything else does work.

#include <ATen/core/ivalue.h>
#include <ATen/record_function.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

struct OpName {
  int64_t calls = 0;
  int64_t views = 0;
};

struct Tally {
  int64_t top = 0;
  int64_t views = 0;
  int64_t nested = 0;
  // Top-level ops and views inside marked sections (see t3d_op_count_section).
  int64_t section_top = 0;
  int64_t section_views = 0;
  int64_t section_start_top = 0;
  int64_t section_start_views = 0;
  std::map<std::string, OpName> by_name;
};

thread_local Tally tally;
thread_local int depth = 0;
thread_local std::vector<const void*> top_inputs;
thread_local at::CallbackHandle handle = 0;

void storages_of(const c10::IValue& value, std::vector<const void*>& out) {
  if (value.isTensor()) {
    const at::Tensor& t = value.toTensor();
    if (t.defined() && t.has_storage()) {
      out.push_back(t.storage().unsafeGetStorageImpl());
    }
  } else if (value.isTensorList()) {
    for (const at::Tensor& t : value.toTensorVector()) {
      if (t.defined() && t.has_storage()) {
        out.push_back(t.storage().unsafeGetStorageImpl());
      }
    }
  }
}

bool is_view(const at::RecordFunction& fn) {
  const std::string name = fn.name();
  if (!name.empty() && name.back() == '_') {
    return false;
  }
  std::vector<const void*> outputs;
  for (const c10::IValue& value : fn.outputs()) {
    storages_of(value, outputs);
  }
  if (outputs.empty()) {
    return false;
  }
  for (const void* out : outputs) {
    bool aliased = false;
    for (const void* in : top_inputs) {
      aliased = aliased || in == out;
    }
    if (!aliased) {
      return false;
    }
  }
  return true;
}

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction& fn) {
  if (depth++ == 0) {
    top_inputs.clear();
    for (const c10::IValue& value : fn.inputs()) {
      storages_of(value, top_inputs);
    }
  } else {
    tally.nested += 1;
  }
  return nullptr;
}

void on_exit(const at::RecordFunction& fn, at::ObserverContext*) {
  if (--depth != 0) {
    return;
  }
  const bool view = is_view(fn);
  tally.top += 1;
  tally.views += view ? 1 : 0;
  OpName& entry = tally.by_name[fn.name()];
  entry.calls += 1;
  entry.views += view ? 1 : 0;
}

}  // namespace

extern "C" {

// Starts counting this thread's ops from zero; returns 0, or 1 if already counting.
int t3d_op_count_start() {
  if (handle != 0) {
    return 1;
  }
  tally = Tally{};
  depth = 0;
  handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(on_enter, on_exit)
          .needsInputs(true)
          .needsOutputs(true)
          .scopes({at::RecordScope::FUNCTION}));
  return 0;
}

// Marks the start (enter = 1) or end (enter = 0) of a section whose ops are tallied apart too
// (a model's layers, say); does nothing while not counting.
void t3d_op_count_section(int enter) {
  if (handle == 0) {
    return;
  }
  if (enter) {
    tally.section_start_top = tally.top;
    tally.section_start_views = tally.views;
  } else {
    tally.section_top += tally.top - tally.section_start_top;
    tally.section_views += tally.views - tally.section_start_views;
  }
}

// Stops counting and writes the tallies: top-level ops, of which views, and nested ops; then
// the same two inside sections (section[0], section[1]). The
// per-op breakdown goes to `names` as "name\tcalls\tviews\n" lines, cut at `capacity` bytes
// (NUL-terminated); returns the bytes the whole breakdown needs.
int64_t t3d_op_count_stop(int64_t* top, int64_t* views, int64_t* nested, int64_t* section,
                          char* names, int64_t capacity) {
  if (handle != 0) {
    at::removeCallback(handle);
    handle = 0;
  }
  *top = tally.top;
  *views = tally.views;
  *nested = tally.nested;
  section[0] = tally.section_top;
  section[1] = tally.section_views;
  std::string text;
  for (const auto& [name, entry] : tally.by_name) {
    text += name + "\t" + std::to_string(entry.calls) + "\t" + std::to_string(entry.views) + "\n";
  }
  if (capacity > 0) {
    const size_t n = std::min(text.size(), static_cast<size_t>(capacity - 1));
    std::memcpy(names, text.data(), n);
    names[n] = '\0';
  }
  return static_cast<int64_t>(text.size()) + 1;
}

}  // extern "C"

#include <c10/core/GradMode.h>

extern "C" {

// Whether autograd records operations on this thread now (torch.is_grad_enabled()).
int t3d_grad_enabled() { return c10::GradMode::is_enabled() ? 1 : 0; }

}  // extern "C"

#include <ATen/Context.h>
#include <ATen/Tensor.h>

extern "C" {

// Whether scaled_dot_product_attention may pick cuDNN's kernel on CUDA (its default in 2.11 for
// these shapes). cuDNN builds an execution plan per new shape, and a server meets a new shape
// at nearly every step; the memory-efficient kernel has no such cost.
void t3d_sdp_use_cudnn(int enabled) { at::globalContext().setSDPUseCuDNN(enabled != 0); }

// A copy of `t` in page-locked host memory (libtorch's caching host allocator), or null on
// failure. Tensor::pin_memory(device) warns on every call that the device argument is
// deprecated; tch offers no other form.
at::Tensor* t3d_pin_memory(const at::Tensor* t) {
  try {
    return new at::Tensor(t->pin_memory());
  } catch (const std::exception&) {
    return nullptr;
  }
}

}  // extern "C"
