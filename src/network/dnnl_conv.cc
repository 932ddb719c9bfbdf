// The DenseBlock's convolution step, act(conv3x3(cat(x_1..x_k), w) + b) with act = LeakyReLU(0.2)
// or none (3x3, stride 1, pad 1, float32), forward and backward, for MindSpore's CPU backend,
// through the oneDNN library that MindSpore itself ships (libdnnl.so.3, threadpool runtime).
// MindSpore's own Conv2D runs oneDNN on plain NCHW, which selects an im2col GEMM; here the
// tensors are reordered to the blocked layouts oneDNN's direct JIT kernels want (2-3x faster).
// Taking the concatenation's pieces and fusing the activation also saves MindSpore's Concat,
// its gradient's slices and the LeakyReLU kernels, which cost as much as the convolutions.
// Entry points follow MindSpore's Custom "aot" calling convention.
#include <algorithm>
#include <cmath>
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

constexpr float kSlope = 0.2f;  // LeakyReLU negative slope of the DenseBlock

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
  bool backward = false;  // the backward primitives exist (built on the first backward call)
};

struct Context {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  Pool pool{ThreadCount()};
  dnnl::stream stream = dnnl::threadpool_interop::make_stream(engine, &pool);
  std::mutex mutex;
  // (n, ci, h, w, co, lrelu) -> primitives
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, bool>, std::unique_ptr<Primitives>>
      cache;
  Buffer src, weights, dst, scratch, concat, dsrc, ddst;
};

Context &Ctx() {
  static Context *ctx = new Context();  // never destroyed: MindSpore may unload late
  return *ctx;
}

// The primitives of one conv shape; the backward ones only when `backward` (inference never
// builds them: each is a JIT-compiled kernel).
Primitives &Get(Context &c, int64_t n, int64_t ci, int64_t h, int64_t w, int64_t co, bool lrelu,
                bool backward) {
  auto key = std::make_tuple(n, ci, h, w, co, lrelu);
  auto it = c.cache.find(key);
  Primitives *p = it == c.cache.end() ? nullptr : it->second.get();
  if (p != nullptr && (p->backward || !backward)) return *p;
  memory::dims src{n, ci, h, w}, wei{co, ci, 3, 3}, bias{co}, dst{n, co, h, w};
  memory::dims stride{1, 1}, pad{1, 1};
  memory::desc src_any(src, memory::data_type::f32, tag::any);
  memory::desc wei_any(wei, memory::data_type::f32, tag::any);
  memory::desc dst_any(dst, memory::data_type::f32, tag::any);
  memory::desc bias_md(bias, memory::data_type::f32, tag::x);
  dnnl::primitive_attr attr, fwd_attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  fwd_attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (lrelu) {
    dnnl::post_ops ops;
    ops.append_eltwise(dnnl::algorithm::eltwise_relu, kSlope, 0.f);  // relu with alpha = leaky
    fwd_attr.set_post_ops(ops);
  }
  if (p == nullptr) {
    auto made = std::make_unique<Primitives>();
    made->fwd = dnnl::convolution_forward::primitive_desc(
        c.engine, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src_any,
        wei_any, bias_md, dst_any, stride, pad, pad, fwd_attr);
    made->conv_fwd = dnnl::convolution_forward(made->fwd);
    p = c.cache.emplace(key, std::move(made)).first->second.get();
  }
  if (!backward) return *p;
  p->bwd_data = dnnl::convolution_backward_data::primitive_desc(
      c.engine, dnnl::algorithm::convolution_direct, src_any, wei_any, dst_any, stride, pad, pad,
      p->fwd, attr);
  p->bwd_weights = dnnl::convolution_backward_weights::primitive_desc(
      c.engine, dnnl::algorithm::convolution_direct, src_any, wei_any, bias_md, dst_any, stride,
      pad, pad, p->fwd, attr);
  p->conv_bwd_data = dnnl::convolution_backward_data(p->bwd_data);
  p->conv_bwd_weights = dnnl::convolution_backward_weights(p->bwd_weights);
  p->backward = true;
  return *p;
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

// Copies between `k` NCHW pieces (params[first..first+k)) and their channel concatenation
// `whole` (N, total, H, W): gather (pieces -> whole) for inputs, scatter for their gradients.
void CopyPieces(Context &c, float *whole, void **params, int64_t **shapes, int first, int k,
                int64_t total, bool gather) {
  int64_t n = shapes[first][0], hw = shapes[first][2] * shapes[first][3];
  c.pool.parallel_for(static_cast<int>(n), [&](int b, int) {
    int64_t offset = 0;
    for (int i = 0; i < k; ++i) {
      int64_t ch = shapes[first + i][1];
      float *joined = whole + (b * total + offset) * hw;
      float *piece = static_cast<float *>(params[first + i]) + b * ch * hw;
      std::memcpy(gather ? joined : piece, gather ? piece : joined, sizeof(float) * ch * hw);
      offset += ch;
    }
  });
}

// The pieces' concatenation (a single piece is used in place); sets the total channel count.
float *Concat(Context &c, void **params, int64_t **shapes, int first, int k, int64_t *channels) {
  int64_t n = shapes[first][0], hw = shapes[first][2] * shapes[first][3], total = 0;
  for (int i = 0; i < k; ++i) total += shapes[first + i][1];
  *channels = total;
  if (k == 1) return static_cast<float *>(params[first]);
  float *out = c.concat.Get(sizeof(float) * n * total * hw);
  CopyPieces(c, out, params, shapes, first, k, total, true);
  return out;
}

// Every tensor float32, 4-D (activations, weights) or 1-D (biases).
bool CheckTensors(int nparam, int *ndims, const char **dtypes, const char *name) {
  for (int i = 0; i < nparam; ++i) {
    if (ndims[i] != 4 && ndims[i] != 1) {
      std::fprintf(stderr, "%s: tensor %d has %d dimensions\n", name, i, ndims[i]);
      return false;
    }
    if (std::strcmp(dtypes[i], "float32") != 0 && std::strcmp(dtypes[i], "float") != 0) {
      std::fprintf(stderr, "%s: tensor %d is %s, only float32 is supported\n", name, i, dtypes[i]);
      return false;
    }
  }
  return true;
}

// y = act(conv3x3(cat(x_1..x_k), w) + b), act = LeakyReLU(0.2) or identity.
// params: x_1..x_k (N,C_i,H,W), w (O,sum C_i,3,3), b (O), y (N,O,H,W).
int Forward(int nparam, void **params, int64_t **shapes, bool lrelu, const char *name) {
  int k = nparam - 3;
  return Guard(name, [&] {
    if (k < 1) throw std::runtime_error("no input");
    Context &c = Ctx();
    std::lock_guard<std::mutex> lock(c.mutex);
    int64_t n = shapes[0][0], h = shapes[0][2], w = shapes[0][3], co = shapes[k][0], ci = 0;
    float *x_ptr = Concat(c, params, shapes, 0, k, &ci);
    if (!CheckConv(ci, co, shapes[k], name)) throw std::runtime_error("bad weights");
    Primitives &p = Get(c, n, ci, h, w, co, lrelu, false);
    memory x = Plain(c, {n, ci, h, w}, tag::nchw, x_ptr);
    memory wt = Plain(c, {co, ci, 3, 3}, tag::oihw, params[k]);
    memory b = Plain(c, {co}, tag::x, params[k + 1]);
    memory y = Plain(c, {n, co, h, w}, tag::nchw, params[k + 2]);
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

// Gradients of Forward. params: dy (N,O,H,W), [y (N,O,H,W) if lrelu], x_1..x_k, w,
// then dx_1..dx_k, dw, db.
int Backward(int nparam, void **params, int64_t **shapes, bool lrelu, const char *name) {
  int lead = lrelu ? 2 : 1;
  int k = (nparam - lead - 3) / 2;
  return Guard(name, [&] {
    if (k < 1 || nparam != lead + 2 * k + 3) throw std::runtime_error("bad argument count");
    Context &c = Ctx();
    std::lock_guard<std::mutex> lock(c.mutex);
    int first = lead, wi_index = lead + k;
    int64_t n = shapes[first][0], h = shapes[first][2], w = shapes[first][3];
    int64_t co = shapes[0][1], ci = 0;
    float *x_ptr = Concat(c, params, shapes, first, k, &ci);
    if (!CheckConv(ci, co, shapes[wi_index], name)) throw std::runtime_error("bad weights");
    Primitives &p = Get(c, n, ci, h, w, co, lrelu, true);
    void *dy_ptr = params[0];
    if (lrelu) {  // gradient before the activation: the sign of y is the sign of its input
      int64_t size = n * co * h * w, chunk = 1 << 16;
      float *g = c.ddst.Get(sizeof(float) * size);
      const float *dy = static_cast<const float *>(params[0]), *y = static_cast<const float *>(params[1]);
      c.pool.parallel_for(static_cast<int>((size + chunk - 1) / chunk), [&](int i, int) {
        for (int64_t j = i * chunk, e = std::min(size, j + chunk); j < e; ++j)
          g[j] = y[j] > 0.f ? dy[j] : dy[j] * kSlope;
      });
      dy_ptr = g;
    }
    int out = lead + k + 1;  // dx_1..dx_k, dw, db
    memory dy = Plain(c, {n, co, h, w}, tag::nchw, dy_ptr);
    memory x = Plain(c, {n, ci, h, w}, tag::nchw, x_ptr);
    memory wt = Plain(c, {co, ci, 3, 3}, tag::oihw, params[wi_index]);
    float *dx_ptr = k == 1 ? static_cast<float *>(params[out]) : c.dsrc.Get(sizeof(float) * n * ci * h * w);
    memory dx = Plain(c, {n, ci, h, w}, tag::nchw, dx_ptr);
    memory dw = Plain(c, {co, ci, 3, 3}, tag::oihw, params[out + k]);
    memory db = Plain(c, {co}, tag::x, params[out + k + 1]);
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
    if (k > 1) CopyPieces(c, dx_ptr, params, shapes, out, k, ci, false);
  });
}

// The coupling's scale e = exp(c * (2 * sigmoid(h) - 1)), and its gradient, evaluated in double
// and rounded to float once: MindSpore's float32 CPU exp / sigmoid are 30-60x less precise than
// a correctly rounded float32 result; these are within half an ulp of it (exp of a double that is
// itself exact to ~1e-16) and as fast as one pass over the tensor.
int64_t Elements(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

template <typename F>
void ParallelChunks(Context &c, int64_t size, F body) {
  const int64_t chunk = 1 << 14;
  c.pool.parallel_for(static_cast<int>((size + chunk - 1) / chunk), [&](int i, int) {
    body(i * chunk, std::min(size, (i + 1) * chunk));
  });
}

// params: h, c (1), e.
int ExpScaleForward(int nparam, void **params, int *ndims, int64_t **shapes, const char *name) {
  return Guard(name, [&] {
    if (nparam != 3) throw std::runtime_error("bad argument count");
    Context &c = Ctx();
    std::lock_guard<std::mutex> lock(c.mutex);
    const float *h = static_cast<const float *>(params[0]);
    const double clamp = *static_cast<const float *>(params[1]);
    float *e = static_cast<float *>(params[2]);
    ParallelChunks(c, Elements(ndims[0], shapes[0]), [&](int64_t b, int64_t end) {
      for (int64_t j = b; j < end; ++j)
        e[j] = static_cast<float>(std::exp(clamp * (2.0 / (1.0 + std::exp(-double(h[j]))) - 1.0)));
    });
  });
}

// params: h, c (1), e, de, then dh, dc (dc = 0: the clamp is a constant).
int ExpScaleBackward(int nparam, void **params, int *ndims, int64_t **shapes, const char *name) {
  return Guard(name, [&] {
    if (nparam != 6) throw std::runtime_error("bad argument count");
    Context &c = Ctx();
    std::lock_guard<std::mutex> lock(c.mutex);
    const float *h = static_cast<const float *>(params[0]);
    const double clamp = *static_cast<const float *>(params[1]);
    const float *e = static_cast<const float *>(params[2]), *de = static_cast<const float *>(params[3]);
    float *dh = static_cast<float *>(params[4]);
    *static_cast<float *>(params[5]) = 0.f;
    ParallelChunks(c, Elements(ndims[0], shapes[0]), [&](int64_t b, int64_t end) {
      for (int64_t j = b; j < end; ++j) {
        double q = std::exp(-double(h[j])), sig = 1.0 / (1.0 + q);  // sig' = q sig^2
        dh[j] = static_cast<float>(double(de[j]) * double(e[j]) * clamp * 2.0 * q * sig * sig);
      }
    });
  });
}

}  // namespace

#define IRN_ENTRY(NAME, FN, LRELU)                                                 \
  extern "C" int NAME(int nparam, void **params, int *ndims, int64_t **shapes,     \
                      const char **dtypes, void *, void *) {                       \
    if (!CheckTensors(nparam, ndims, dtypes, #NAME)) return 1;                     \
    return FN(nparam, params, shapes, LRELU, #NAME);                               \
  }

// One symbol per number of pieces (1-5): MindSpore keys a Custom op's signature by its symbol.
#define IRN_ENTRIES(K)                               \
  IRN_ENTRY(IrnConvForward##K, Forward, false)       \
  IRN_ENTRY(IrnConvLreluForward##K, Forward, true)   \
  IRN_ENTRY(IrnConvBackward##K, Backward, false)     \
  IRN_ENTRY(IrnConvLreluBackward##K, Backward, true)
IRN_ENTRIES(1)
IRN_ENTRIES(2)
IRN_ENTRIES(3)
IRN_ENTRIES(4)
IRN_ENTRIES(5)

#define IRN_SCALE_ENTRY(NAME, FN)                                                  \
  extern "C" int NAME(int nparam, void **params, int *ndims, int64_t **shapes,     \
                      const char **dtypes, void *, void *) {                       \
    if (!CheckTensors(nparam, ndims, dtypes, #NAME)) return 1;                     \
    return FN(nparam, params, ndims, shapes, #NAME);                               \
  }
IRN_SCALE_ENTRY(IrnExpScaleForward, ExpScaleForward)
IRN_SCALE_ENTRY(IrnExpScaleBackward, ExpScaleBackward)
