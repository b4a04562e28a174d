// Minimal ExecuTorch .pte runner (C++17), built against the prebuilt
// executorch wheel's headers and shared libraries (see build.sh).
//
//   pte_runner --model m.pte --input in.f32 --shape 1,3,16,16
//              [--output out.f32] [--runs N] [--threads M] [--markers]
//
// Input and output are raw little-endian float32 in NCHW order.
// Only output 0 of method "forward" is written.
// --markers brackets each forward call with a syscall that Linux does not have (it returns
// ENOSYS), which the QEMU plugin insn_count.c reads to count one pass's instructions. Leave
// it off on devices whose seccomp policy kills unknown syscalls (Android apps; adb shell
// binaries are not filtered).

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <sys/syscall.h>
#include <unistd.h>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/runtime.h>

// The wheel ships libexecutorch_threadpool.so but not threadpool.h (that
// header includes pthreadpool.h, which is not shipped either). Declare only
// the two members used here; signatures match extension/threadpool/threadpool.h.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
} // namespace executorch::extension::threadpool

using executorch::extension::make_tensor_ptr;
using executorch::extension::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using Clock = std::chrono::steady_clock;

namespace {

constexpr long kMarkerSyscall = 0x4c4d46; // insn_count.c's MARKER_SYSCALL

void marker(bool on, int begin_or_end, int run) {
  if (on) syscall(kMarkerSyscall, begin_or_end, run);
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "error: %s\n", msg.c_str());
  std::exit(1);
}

// runtime::Error codes are listed in runtime/core/error.h (hex).
std::string err_str(Error e) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%02x", static_cast<unsigned>(e));
  return buf;
}

std::vector<int32_t> parse_shape(const std::string& s) {
  std::vector<int32_t> dims;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    const std::string tok = s.substr(pos, comma - pos);
    char* end = nullptr;
    const long v = std::strtol(tok.c_str(), &end, 10);
    if (tok.empty() || *end != '\0' || v <= 0) die("bad --shape: " + s);
    dims.push_back(static_cast<int32_t>(v));
    pos = comma + 1;
  }
  return dims;
}

std::vector<float> read_f32(const std::string& path, size_t count) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) die("cannot open " + path);
  const size_t bytes = static_cast<size_t>(f.tellg());
  if (bytes != count * sizeof(float)) {
    die(path + " has " + std::to_string(bytes) + " bytes, shape needs " +
        std::to_string(count * sizeof(float)));
  }
  std::vector<float> data(count);
  f.seekg(0);
  f.read(reinterpret_cast<char*>(data.data()), bytes);
  return data;
}

void usage(const char* argv0) {
  std::fprintf(
      stderr,
      "usage: %s --model m.pte --input in.f32 --shape 1,3,H,W "
      "[--output out.f32] [--runs N] [--threads M] [--markers]\n",
      argv0);
  std::exit(2);
}

} // namespace

int main(int argc, char** argv) {
  std::string model, input, output, shape;
  int runs = 1, threads = 0; // threads 0: keep the library default
  bool markers = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--markers") {
      markers = true;
      continue;
    }
    if (i + 1 >= argc) usage(argv[0]);
    const char* v = argv[++i];
    if (a == "--model") model = v;
    else if (a == "--input") input = v;
    else if (a == "--output") output = v;
    else if (a == "--shape") shape = v;
    else if (a == "--runs") runs = std::atoi(v);
    else if (a == "--threads") threads = std::atoi(v);
    else usage(argv[0]);
  }
  if (model.empty() || input.empty() || shape.empty() || runs < 1) {
    usage(argv[0]);
  }

  executorch::runtime::runtime_init();

  // Must happen before the method is loaded: the XNNPACK delegate picks up
  // the shared pthreadpool when it initialises.
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (threads > 0 && pool != nullptr) {
    if (!pool->_unsafe_reset_threadpool(static_cast<uint32_t>(threads))) {
      die("could not resize threadpool to " + std::to_string(threads));
    }
  }
  std::printf(
      "threadpool threads: %zu\n", pool ? pool->get_thread_count() : size_t(0));

  const std::vector<int32_t> dims = parse_shape(shape);
  size_t numel = 1;
  for (int32_t d : dims) numel *= static_cast<size_t>(d);
  auto in_tensor = make_tensor_ptr(dims, read_f32(input, numel));

  auto t0 = Clock::now();
  Module module(model, Module::LoadMode::File);
  Error err = module.load_method("forward");
  if (err != Error::Ok) {
    die("load_method(forward) failed, error " + err_str(err));
  }
  std::printf("load: %.2f ms\n", ms_since(t0));

  std::vector<EValue> outputs;
  double total = 0.0;
  for (int r = 0; r < runs; ++r) {
    marker(markers, 0, r);
    t0 = Clock::now();
    auto result = module.forward(in_tensor);
    const double ms = ms_since(t0);
    marker(markers, 1, r);
    if (!result.ok()) {
      die("forward failed, error " + err_str(result.error()));
    }
    total += ms;
    std::printf("run %d: %.2f ms\n", r, ms);
    if (r == runs - 1) outputs = std::move(result.get());
  }
  std::printf("mean: %.2f ms over %d runs\n", total / runs, runs);

  if (outputs.empty() || !outputs[0].isTensor()) die("output 0 is not a tensor");
  const auto& out = outputs[0].toTensor();
  if (out.scalar_type() != executorch::aten::ScalarType::Float) {
    die("output 0 is not float32");
  }
  std::printf("output shape: ");
  for (size_t d = 0; d < static_cast<size_t>(out.dim()); ++d) {
    std::printf(d ? ",%d" : "%d", static_cast<int>(out.size(d)));
  }
  std::printf("\n");

  if (!output.empty()) {
    std::ofstream f(output, std::ios::binary);
    f.write(
        static_cast<const char*>(out.const_data_ptr()),
        static_cast<std::streamsize>(out.nbytes()));
    if (!f) die("cannot write " + output);
  }
  return 0;
}
