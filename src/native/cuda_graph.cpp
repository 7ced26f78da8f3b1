// CUDA graphs over libtorch's at::cuda::CUDAGraph, for src/engine/cuda_graph.rs. Compiled by
// build.rs only when the libtorch in use has CUDA and the CUDA runtime headers are found.
//
// A capture runs on a side stream (CUDA cannot capture the legacy default stream): enter the
// stream, run the work once there (cuBLAS and the allocator set themselves up outside the
// capture), begin, run it again, end. Every graph captures into one shared memory pool, so
// their intermediates reuse the same memory; what a graph's outputs hold stays theirs while
// those tensors live. Replay runs on the current stream, after whatever was queued before.

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <cstring>
#include <optional>
#include <string>

namespace {

thread_local std::string last_error;

// Only functions exported by libtorch_cuda and libc10_cuda are called (no inline CUDA runtime
// calls), so the binary needs no CUDA runtime of its own on the library path.
struct Graph {
  at::cuda::CUDAGraph graph;
  // The stream that was current before entering the side stream.
  std::optional<c10::cuda::CUDAStream> previous;
  bool capturing = false;
};

template <typename F>
int guarded(F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
}

}  // namespace

extern "C" {

// The message of the last failure on this thread, cut to `capacity` bytes (NUL-terminated).
void t3d_graph_last_error(char* out, int64_t capacity) {
  if (capacity <= 0) return;
  const size_t n = std::min(last_error.size(), static_cast<size_t>(capacity - 1));
  std::memcpy(out, last_error.data(), n);
  out[n] = '\0';
}

void* t3d_graph_new() {
  try {
    return new Graph();
  } catch (const std::exception& e) {
    last_error = e.what();
    return nullptr;
  }
}

// Waits for everything queued on `device`, then makes a side stream the current one.
int t3d_graph_enter_stream(void* g, int device) {
  return guarded([&] {
    auto* graph = static_cast<Graph*>(g);
    c10::cuda::device_synchronize();
    graph->previous.emplace(c10::cuda::getCurrentCUDAStream(device));
    c10::cuda::setCurrentCUDAStream(c10::cuda::getStreamFromPool(false, device));
  });
}

// Starts capturing the side stream's work, into the memory pool of `share_pool_of` if not null.
int t3d_graph_capture_begin(void* g, void* share_pool_of) {
  return guarded([&] {
    auto* graph = static_cast<Graph*>(g);
    c10::cuda::device_synchronize();
    if (share_pool_of != nullptr) {
      graph->graph.capture_begin(static_cast<Graph*>(share_pool_of)->graph.pool());
    } else {
      graph->graph.capture_begin();
    }
    graph->capturing = true;
  });
}

// Ends the capture (or an aborted one: then the graph is unusable) and leaves the side stream.
int t3d_graph_capture_end(void* g) {
  auto* graph = static_cast<Graph*>(g);
  const int status = graph->capturing ? guarded([&] { graph->graph.capture_end(); }) : 0;
  graph->capturing = false;
  const int synced = guarded([&] { c10::cuda::device_synchronize(); });
  if (graph->previous) {
    c10::cuda::setCurrentCUDAStream(*graph->previous);
    graph->previous.reset();
  }
  return status != 0 ? status : synced;
}

int t3d_graph_replay(void* g) {
  return guarded([&] { static_cast<Graph*>(g)->graph.replay(); });
}

void t3d_graph_free(void* g) { delete static_cast<Graph*>(g); }

}  // extern "C"
