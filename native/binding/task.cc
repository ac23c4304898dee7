// The compute thread (declared in task.h).
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "task.h"

namespace pn::binding {
namespace {

/** The one compute thread (see task.h). */
class ComputeThread {
 public:
  static ComputeThread& instance() {
    static ComputeThread* thread = new ComputeThread();  // never destroyed: lives with the process
    return *thread;
  }

  /**
   * Runs `job` on the compute thread and waits for it. `job` should not throw; if it does, the
   * exception is caught on the compute thread (the loop must never see one: it would reach
   * std::terminate) and rethrown here, on the caller's thread.
   */
  void run(const std::function<void()>& job) {
    std::mutex doneMutex;
    std::condition_variable doneCv;
    bool done = false;
    std::exception_ptr error;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.emplace_back([&]() noexcept {
        try {
          job();
        } catch (...) {
          error = std::current_exception();
        }
        std::lock_guard<std::mutex> doneLock(doneMutex);
        done = true;
        doneCv.notify_one();
      });
    }
    ready_.notify_one();
    std::unique_lock<std::mutex> lock(doneMutex);
    doneCv.wait(lock, [&] { return done; });
    if (error) std::rethrow_exception(error);
  }

 private:
  ComputeThread() { std::thread([this] { loop(); }).detach(); }

  void loop() noexcept {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [&] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      try {
        job();  // the wrappers made by run() catch everything; this is the last line of defence
      } catch (...) {
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
};

}  // namespace

void runOnComputeThread(const std::function<void()>& job) { ComputeThread::instance().run(job); }

}  // namespace pn::binding
