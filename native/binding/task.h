// The Task/Promise glue of the N-API boundary: work that can take more than about a millisecond runs
// off the main thread (LibTorch compute on the one compute thread, I/O and copies on libuv's pool)
// and settles a Promise; pn::Error becomes a JS Error. Also the counters `counters()` reports.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "../core/api.h"

namespace pn::binding {

// ---- counters visible from JS (runtime.cc's counters()) ------------------------------------------

inline std::atomic<int64_t> gTasksQueued{0};
inline std::atomic<int64_t> gTasksRunning{0};
inline std::atomic<int64_t> gLiveTensors{0};
inline std::atomic<int64_t> gReportedBytes{0};

/**
 * The one thread that runs LibTorch's multi-threaded compute. libgomp gives every thread that
 * starts a parallel region its own team of workers, and once it manages more threads than there
 * are cores it all but stops spinning between regions (its throttled spin count): a network's
 * hundreds of short parallel ops then each pay a futex wake-up. With tasks landing on any of
 * libuv's threads, a training step ran 10-25% slower than the same step in one Python thread
 * (measured: unet_r18 and scseunet_se50 at 256 px); on this one thread it does not. Every other
 * thread runs LibTorch serially (pn::useSerialThread), so this thread's team stays the only one.
 */
/**
 * Runs `job` on the compute thread (task.cc) and waits for it. `job` should not throw; if it does,
 * the exception is caught on the compute thread (the loop must never see one: it would reach
 * std::terminate) and rethrown here, on the caller's thread.
 */
void runOnComputeThread(const std::function<void()>& job);

/** Where a task runs: LibTorch compute on the compute thread, or I/O, copies, decoding and other
 * work with threads of its own on a libuv worker (LibTorch serial there), overlapping compute. */
enum class RunOn { Compute, Pool };

/**
 * Runs `work` off the main thread and settles a Promise with `done(env, result)` on the main
 * thread. Lambdas must not capture napi_values (they die with the caller's HandleScope): capture
 * C++ values, or JS objects through a shared Napi::ObjectReference.
 */
template <typename R>
class Task final : public Napi::AsyncWorker {
 public:
  using Work = std::function<R()>;
  using Done = std::function<Napi::Value(Napi::Env, R&)>;

  static Napi::Promise Run(Napi::Env env, const char* name, Work work, Done done, RunOn where = RunOn::Compute) {
    auto* task = new Task(env, name, std::move(work), std::move(done), where);
    Napi::Promise promise = task->deferred_.Promise();
    ++gTasksQueued;
    task->Queue();
    return promise;
  }

 private:
  Task(Napi::Env env, const char* name, Work work, Done done, RunOn where)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)), where_(where) {}

  void Execute() override {
    --gTasksQueued;
    ++gTasksRunning;
    std::optional<std::string> error;
    auto body = [&] {
      try {
        if (where_ == RunOn::Compute) {
          pn::syncThreads();
        } else {
          pn::useSerialThread();
        }
        result_.emplace(work_());
      } catch (const std::exception& e) {
        error = e.what();
      } catch (...) {
        error = "unknown native error";
      }
    };
    // body never throws: the compute thread's loop must not see an exception. Queueing the job
    // itself can fail (no memory): that, too, becomes the promise's rejection.
    try {
      if (where_ == RunOn::Compute) {
        runOnComputeThread(body);
      } else {
        body();
      }
    } catch (const std::exception& e) {
      if (!error) error = e.what();
    } catch (...) {
      if (!error) error = "unknown native error";
    }
    if (error) SetError(*error);
    --gTasksRunning;
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    try {
      deferred_.Resolve(done_(env, *result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::exception& e) {
      deferred_.Reject(Napi::Error::New(env, e.what()).Value());
    }
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  RunOn where_;
  std::optional<R> result_;
};

/** Runs a synchronous native call, turning pn::Error into a JS Error. */
template <typename Fn>
auto syncCall(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

}  // namespace pn::binding
