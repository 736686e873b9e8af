#pragma once
// The event loop: one thread, one epoll set, a timer heap behind one timerfd, and a signalfd.
// The only file in the project that includes <sys/epoll.h> is event_loop.cpp.
//
// Objects that do I/O are passive: they register their fds here and react to callbacks; they
// never block or poll themselves. A source that has more work than its per-turn budget calls
// `defer()` so it is called again on the next turn without waiting in epoll (buffered libpq
// notifications raise no new EPOLLIN, so this is how they are drained fairly).

#include <signal.h>
#include <sys/signalfd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "dispatcherd/fd.h"

namespace dispatcherd {

/// Monotonic time in seconds, as a double (what timers, timeouts and ages use).
using MonoTime = double;

/// Current CLOCK_MONOTONIC time in seconds.
MonoTime mono_now();

/// A source of the current monotonic time; the fake in tests/support moves by hand.
class Clock {
 public:
  virtual ~Clock() = default;
  /// Seconds on a monotonic clock.
  virtual MonoTime now() const = 0;
};

/// Readiness bits passed to I/O callbacks (mirrors EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP).
enum IoEvent : std::uint32_t {
  kReadable = 0x001,
  kWritable = 0x004,
  kError = 0x008,
  kHangup = 0x010,
};

/// The single-threaded reactor. Not copyable; lives for the whole service.
class EventLoop : public Clock {
 public:
  using IoCallback = std::function<void(std::uint32_t events)>;
  using Callback = std::function<void()>;
  using SignalCallback = std::function<void(const signalfd_siginfo&)>;
  using TimerId = std::uint64_t;

  EventLoop();
  ~EventLoop() override;
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  /// Monotonic now (cached per turn is not done: each call reads the clock).
  MonoTime now() const override { return mono_now(); }

  /// Watches `fd` for `events` (kReadable|kWritable); `cb` gets the ready bits. One callback
  /// per fd; watching an fd again replaces its callback and events.
  void watch(int fd, std::uint32_t events, IoCallback cb);
  /// Changes the events of a watched fd (e.g. add kWritable while output is pending).
  void modify(int fd, std::uint32_t events);
  /// Stops watching `fd` (before it is closed). Safe to call from within its callback.
  void unwatch(int fd);

  /// Runs `cb` once after `delay` seconds (0 = next turn). Returns an id for cancel().
  TimerId after(double delay, Callback cb);
  /// Runs `cb` once at monotonic time `when`.
  TimerId at(MonoTime when, Callback cb);
  /// Cancels a pending timer; unknown or fired ids are ignored.
  void cancel(TimerId id);
  /// Number of pending timers (for `aio_tasks` and tests).
  std::size_t timer_count() const { return timer_callbacks_.size(); }

  /// Runs `cb` on the next turn without waiting (for sources that stopped at their budget).
  void defer(Callback cb);

  /// Delivers `signo` through the signalfd to `cb`. The signal is blocked for the process
  /// (call before any child is forked; children unblock what they need).
  void on_signal(int signo, SignalCallback cb);

  /// Adds a chore run once per turn, after I/O and timers (e.g. flush the log backlog).
  void every_turn(Callback cb);

  /// Runs until stop() is called.
  void run();
  /// Processes one turn, waiting at most `max_wait` seconds (-1 = until an event). For tests.
  void run_once(double max_wait);
  /// Makes run() return after the current turn.
  void stop() { running_ = false; }
  /// True while run() is looping.
  bool running() const { return running_; }

 private:
  struct Watch {
    std::uint32_t events;
    std::shared_ptr<IoCallback> cb;
  };
  struct TimerEntry {
    MonoTime when;
    TimerId id;
    bool operator>(const TimerEntry& o) const { return when > o.when || (when == o.when && id > o.id); }
  };

  void arm_timerfd();
  void fire_timers();
  void read_signals();

  Fd epoll_;
  Fd timerfd_;
  Fd signalfd_;
  sigset_t signal_mask_{};
  std::unordered_map<int, Watch> watches_;
  std::vector<TimerEntry> heap_;  // min-heap on (when, id)
  std::unordered_map<TimerId, Callback> timer_callbacks_;
  TimerId next_timer_ = 1;
  MonoTime armed_for_ = -1;
  std::vector<Callback> deferred_;
  std::unordered_map<int, SignalCallback> signal_callbacks_;
  std::vector<Callback> chores_;
  bool running_ = false;
};

}  // namespace dispatcherd
