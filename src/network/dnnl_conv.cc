// 3x3 stride-1 pad-1 float32 convolution (forward and backward) for MindSpore's CPU backend,
// through the oneDNN library that MindSpore itself ships (libdnnl.so.3, threadpool runtime).
// MindSpore's own Conv2D runs oneDNN on plain NCHW, which selects an im2col GEMM; here the
// tensors are reordered to the blocked layouts oneDNN's direct JIT kernels want (2-3x faster).
// Entry points follow MindSpore's Custom "aot" calling convention.
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <memory>
#include <mutex>
#include <sched.h>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "oneapi/dnnl/dnnl_threadpool.hpp"

namespace {

using dnnl::memory;
using tag = memory::format_tag;

// A minimal blocking thread pool for oneDNN's threadpool runtime; the calling thread works too.
class Pool : public dnnl::threadpool_interop::threadpool_iface {
 public:
  explicit Pool(int n) : n_(n < 1 ? 1 : n) {
    for (int t = 1; t < n_; ++t) workers_.emplace_back([this] { Loop(); });
  }
  ~Pool() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto &w : workers_) w.join();
  }
  int get_num_threads() const override { return n_; }
  bool get_in_parallel() const override { return in_parallel_; }
  uint64_t get_flags() const override { return 0; }
  void parallel_for(int n, const std::function<void(int, int)> &fn) override {
    if (n <= 1 || n_ == 1 || in_parallel_) {
      for (int i = 0; i < n; ++i) fn(i, n);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      total_ = n;
      next_.store(0);
      done_.store(0);
      ++generation_;
    }
    cv_.notify_all();
    Work();
    while (done_.load(std::memory_order_acquire) < total_) std::this_thread::yield();
  }

 private:
  static thread_local bool in_parallel_;
  void Work() {
    in_parallel_ = true;
    for (int i; (i = next_.fetch_add(1)) < total_;) {
      (*fn_)(i, total_);
      done_.fetch_add(1, std::memory_order_release);
    }
    in_parallel_ = false;
  }
  void Loop() {
    long seen = 0;
    for (;;) {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (stop_) return;
      lock.unlock();
      Work();
    }
  }
  int n_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable cv_;
  long generation_ = 0;
  bool stop_ = false;
  const std::function<void(int, int)> *fn_ = nullptr;
  int total_ = 0;
  std::atomic<int> next_{0}, done_{0};
};
thread_local bool Pool::in_parallel_ = false;

int ThreadCount() {
  const char *env = std::getenv("IRN_CONV_THREADS");
  if (env && std::atoi(env) > 0) return std::atoi(env);
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  return static_cast<int>(std::thread::hardware_concurrency());
}

// Grow-only scratch buffers shared by all calls (calls are serialised by Context::mutex).
struct Buffer {
  std::vector<float> data;
  float *Get(size_t bytes) {
    size_t n = (bytes + sizeof(float) - 1) / sizeof(float);
    if (data.size() < n) {
      data.clear();
      data.shrink_to_fit();
      data.resize(n);
    }
    return data.data();
  }
};

struct Primitives {
  dnnl::convolution_forward::primitive_desc fwd;
  dnnl::convolution_backward_data::primitive_desc bwd_data;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights;
  dnnl::convolution_forward conv_fwd;
  dnnl::convolution_backward_data conv_bwd_data;
  dnnl::convolution_backward_weights conv_bwd_weights;
};

struct Context {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  Pool pool{ThreadCount()};
  dnnl::stream stream = dnnl::threadpool_interop::make_stream(engine, &pool);
  std::mutex mutex;
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>, std::unique_ptr<Primitives>> cache;
  Buffer src, weights, dst, extra, scratch;
};

Context &Ctx() {
  static Context *ctx = new Context();  // never destroyed: MindSpore may unload late
  return *ctx;
}

Primitives &Get(Context &c, int64_t n, int64_t ci, int64_t h, int64_t w, int64_t co) {
  auto key = std::make_tuple(n, ci, h, w, co);
  auto it = c.cache.find(key);
  if (it != c.cache.end()) return *it->second;
  memory::dims src{n, ci, h, w}, wei{co, ci, 3, 3}, bias{co}, dst{n, co, h, w};
  memory::dims stride{1, 1}, pad{1, 1};
  memory::desc src_any(src, memory::data_type::f32, tag::any);
  memory::desc wei_any(wei, memory::data_type::f32, tag::any);
  memory::desc dst_any(dst, memory::data_type::f32, tag::any);
  memory::desc bias_md(bias, memory::data_type::f32, tag::x);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto p = std::make_unique<Primitives>();
  p->fwd = dnnl::convolution_forward::primitive_desc(
      c.engine, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src_any,
      wei_any, bias_md, dst_any, stride, pad, pad, attr);
  p->bwd_data = dnnl::convolution_backward_data::primitive_desc(
      c.engine, dnnl::algorithm::convolution_direct, src_any, wei_any, dst_any, stride, pad, pad,
      p->fwd, attr);
  p->bwd_weights = dnnl::convolution_backward_weights::primitive_desc(
      c.engine, dnnl::algorithm::convolution_direct, src_any, wei_any, bias_md, dst_any, stride,
      pad, pad, p->fwd, attr);
  p->conv_fwd = dnnl::convolution_forward(p->fwd);
  p->conv_bwd_data = dnnl::convolution_backward_data(p->bwd_data);
  p->conv_bwd_weights = dnnl::convolution_backward_weights(p->bwd_weights);
  return *c.cache.emplace(key, std::move(p)).first->second;
}

// `user` viewed in layout `want`: the user memory itself, or a reorder into `buf` (if `in`).
memory View(Context &c, const memory &user, const memory::desc &want, Buffer &buf, bool in) {
  if (want == user.get_desc()) return user;
  memory m(want, c.engine, buf.Get(want.get_size()));
  if (in) dnnl::reorder(user, m).execute(c.stream, const_cast<memory &>(user), m);
  return m;
}

void CopyOut(Context &c, memory &inner, memory &user) {
  if (inner.get_data_handle() != user.get_data_handle()) dnnl::reorder(inner, user).execute(c.stream, inner, user);
}

memory Plain(Context &c, const memory::dims &d, tag t, void *ptr) {
  return memory(memory::desc(d, memory::data_type::f32, t), c.engine, ptr);
}

bool CheckArgs(int nparam, int expected, int *ndims, const char **dtypes, const char *name) {
  if (nparam != expected) {
    std::fprintf(stderr, "%s: expected %d tensors, got %d\n", name, expected, nparam);
    return false;
  }
  for (int i = 0; i < nparam; ++i) {
    if (std::strcmp(dtypes[i], "float32") != 0 && std::strcmp(dtypes[i], "float") != 0) {
      std::fprintf(stderr, "%s: tensor %d is %s, only float32 is supported\n", name, i, dtypes[i]);
      return false;
    }
  }
  if (ndims[0] != 4 || ndims[1] != 4) {
    std::fprintf(stderr, "%s: expected 4-D tensors\n", name);
    return false;
  }
  return true;
}

bool CheckConv(int64_t ci, int64_t co, const int64_t *w, const char *name) {
  if (w[0] != co || w[1] != ci || w[2] != 3 || w[3] != 3) {
    std::fprintf(stderr, "%s: weights (%lld,%lld,%lld,%lld) do not fit a 3x3 conv %lld -> %lld\n", name,
                 (long long)w[0], (long long)w[1], (long long)w[2], (long long)w[3], (long long)ci,
                 (long long)co);
    return false;
  }
  return true;
}

template <typename F>
int Guard(const char *name, F body) {
  try {
    body();
    return 0;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace

// y = conv3x3(x, w) + b.  params: x (N,C,H,W), w (O,C,3,3), b (O), y (N,O,H,W).
extern "C" int IrnConv3x3Forward(int nparam, void **params, int *ndims, int64_t **shapes,
                                 const char **dtypes, void *, void *) {
  if (!CheckArgs(nparam, 4, ndims, dtypes, "IrnConv3x3Forward")) return 1;
  return Guard("IrnConv3x3Forward", [&] {
    Context &c = Ctx();
    std::lock_guard<std::mutex> lock(c.mutex);
    int64_t n = shapes[0][0], ci = shapes[0][1], h = shapes[0][2], w = shapes[0][3], co = shapes[1][0];
    if (!CheckConv(ci, co, shapes[1], "IrnConv3x3Forward")) throw std::runtime_error("bad weights");
    Primitives &p = Get(c, n, ci, h, w, co);
    memory x = Plain(c, {n, ci, h, w}, tag::nchw, params[0]);
    memory wt = Plain(c, {co, ci, 3, 3}, tag::oihw, params[1]);
    memory b = Plain(c, {co}, tag::x, params[2]);
    memory y = Plain(c, {n, co, h, w}, tag::nchw, params[3]);
    memory xi = View(c, x, p.fwd.src_desc(), c.src, true);
    memory wi = View(c, wt, p.fwd.weights_desc(), c.weights, true);
    memory yi = View(c, y, p.fwd.dst_desc(), c.dst, false);
    memory sp(p.fwd.scratchpad_desc(), c.engine, c.scratch.Get(p.fwd.scratchpad_desc().get_size()));
    p.conv_fwd.execute(c.stream, {{DNNL_ARG_SRC, xi}, {DNNL_ARG_WEIGHTS, wi}, {DNNL_ARG_BIAS, b},
                                  {DNNL_ARG_DST, yi}, {DNNL_ARG_SCRATCHPAD, sp}});
    CopyOut(c, yi, y);
    c.stream.wait();
  });
}

// Gradients of the forward.  params: dy (N,O,H,W), x (N,C,H,W), w (O,C,3,3),
// dx (N,C,H,W), dw (O,C,3,3), db (O).
extern "C" int IrnConv3x3Backward(int nparam, void **params, int *ndims, int64_t **shapes,
                                  const char **dtypes, void *, void *) {
  if (!CheckArgs(nparam, 6, ndims, dtypes, "IrnConv3x3Backward")) return 1;
  return Guard("IrnConv3x3Backward", [&] {
    Context &c = Ctx();
    std::lock_guard<std::mutex> lock(c.mutex);
    int64_t n = shapes[1][0], ci = shapes[1][1], h = shapes[1][2], w = shapes[1][3], co = shapes[0][1];
    if (!CheckConv(ci, co, shapes[2], "IrnConv3x3Backward")) throw std::runtime_error("bad weights");
    Primitives &p = Get(c, n, ci, h, w, co);
    memory dy = Plain(c, {n, co, h, w}, tag::nchw, params[0]);
    memory x = Plain(c, {n, ci, h, w}, tag::nchw, params[1]);
    memory wt = Plain(c, {co, ci, 3, 3}, tag::oihw, params[2]);
    memory dx = Plain(c, {n, ci, h, w}, tag::nchw, params[3]);
    memory dw = Plain(c, {co, ci, 3, 3}, tag::oihw, params[4]);
    memory db = Plain(c, {co}, tag::x, params[5]);
    // diff_dst is shared by both primitives when they agree on its layout (the usual case).
    memory dyi = View(c, dy, p.bwd_weights.diff_dst_desc(), c.dst, true);
    memory xi = View(c, x, p.bwd_weights.src_desc(), c.src, true);
    memory dwi = View(c, dw, p.bwd_weights.diff_weights_desc(), c.weights, false);
    memory sp(p.bwd_weights.scratchpad_desc(), c.engine,
              c.scratch.Get(p.bwd_weights.scratchpad_desc().get_size()));
    p.conv_bwd_weights.execute(c.stream, {{DNNL_ARG_SRC, xi}, {DNNL_ARG_DIFF_DST, dyi},
                                          {DNNL_ARG_DIFF_WEIGHTS, dwi}, {DNNL_ARG_DIFF_BIAS, db},
                                          {DNNL_ARG_SCRATCHPAD, sp}});
    CopyOut(c, dwi, dw);
    memory dyd = p.bwd_data.diff_dst_desc() == dyi.get_desc()
                     ? dyi : View(c, dy, p.bwd_data.diff_dst_desc(), c.dst, true);
    memory wi = View(c, wt, p.bwd_data.weights_desc(), c.weights, true);
    memory dxi = View(c, dx, p.bwd_data.diff_src_desc(), c.src, false);
    memory sp2(p.bwd_data.scratchpad_desc(), c.engine,
               c.scratch.Get(p.bwd_data.scratchpad_desc().get_size()));
    p.conv_bwd_data.execute(c.stream, {{DNNL_ARG_DIFF_DST, dyd}, {DNNL_ARG_WEIGHTS, wi},
                                       {DNNL_ARG_DIFF_SRC, dxi}, {DNNL_ARG_SCRATCHPAD, sp2}});
    CopyOut(c, dxi, dx);
    c.stream.wait();
  });
}
