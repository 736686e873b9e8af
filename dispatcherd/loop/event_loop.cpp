#include "dispatcherd/loop/event_loop.h"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "dispatcherd/log.h"

namespace dispatcherd {

static_assert(static_cast<unsigned>(kReadable) == EPOLLIN &&
              static_cast<unsigned>(kWritable) == EPOLLOUT &&
              static_cast<unsigned>(kError) == EPOLLERR && static_cast<unsigned>(kHangup) == EPOLLHUP);

MonoTime mono_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

EventLoop::EventLoop()
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      timerfd_(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) {
  DISPATCHERD_ASSERT(epoll_.valid() && timerfd_.valid());
  sigemptyset(&signal_mask_);
  watch(timerfd_.get(), kReadable, [this](std::uint32_t) {
    std::uint64_t expirations;
    while (::read(timerfd_.get(), &expirations, sizeof expirations) > 0) {
    }
    armed_for_ = -1;
    fire_timers();
  });
}

EventLoop::~EventLoop() = default;

void EventLoop::watch(int fd, std::uint32_t events, IoCallback cb) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  auto it = watches_.find(fd);
  int op = it == watches_.end() ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (::epoll_ctl(epoll_.get(), op, fd, &ev) != 0) {
    LOG_CRITICAL("epoll_ctl(" << (op == EPOLL_CTL_ADD ? "ADD" : "MOD") << ", fd " << fd
                              << ") failed: " << std::strerror(errno));
    ::abort();
  }
  watches_[fd] = Watch{events, std::make_shared<IoCallback>(std::move(cb))};
}

void EventLoop::modify(int fd, std::uint32_t events) {
  auto it = watches_.find(fd);
  DISPATCHERD_ASSERT(it != watches_.end());
  if (it->second.events == events) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) {
    LOG_CRITICAL("epoll_ctl(MOD, fd " << fd << ") failed: " << std::strerror(errno));
    ::abort();
  }
  it->second.events = events;
}

void EventLoop::unwatch(int fd) {
  auto it = watches_.find(fd);
  if (it == watches_.end()) return;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  watches_.erase(it);
}

EventLoop::TimerId EventLoop::after(double delay, Callback cb) {
  return at(mono_now() + std::max(0.0, delay), std::move(cb));
}

EventLoop::TimerId EventLoop::at(MonoTime when, Callback cb) {
  TimerId id = next_timer_++;
  timer_callbacks_.emplace(id, std::move(cb));
  heap_.push_back({when, id});
  std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
  if (armed_for_ < 0 || when < armed_for_) arm_timerfd();
  return id;
}

void EventLoop::cancel(TimerId id) {
  // The heap entry stays until it surfaces; its callback is gone, so it fires nothing.
  timer_callbacks_.erase(id);
}

void EventLoop::arm_timerfd() {
  // Drop cancelled entries at the top so the timerfd is armed for a live timer.
  while (!heap_.empty() && !timer_callbacks_.count(heap_.front().id)) {
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
    heap_.pop_back();
  }
  itimerspec its{};
  if (!heap_.empty()) {
    // Clamped above too: a far timer (a hostile `delay: 1e300`) must not overflow time_t. It
    // re-arms when the clamped time comes, so it still never fires early.
    MonoTime when = std::clamp(heap_.front().when, 1e-9, 1e10);
    its.it_value.tv_sec = static_cast<time_t>(when);
    its.it_value.tv_nsec = static_cast<long>((when - std::floor(when)) * 1e9);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
    armed_for_ = when;
  } else {
    armed_for_ = -1;
  }
  ::timerfd_settime(timerfd_.get(), TFD_TIMER_ABSTIME, &its, nullptr);
}

void EventLoop::fire_timers() {
  MonoTime now = mono_now();
  while (!heap_.empty() && heap_.front().when <= now) {
    TimerId id = heap_.front().id;
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
    heap_.pop_back();
    auto it = timer_callbacks_.find(id);
    if (it == timer_callbacks_.end()) continue;
    Callback cb = std::move(it->second);
    timer_callbacks_.erase(it);
    cb();
  }
  arm_timerfd();
}

void EventLoop::defer(Callback cb) { deferred_.push_back(std::move(cb)); }

void EventLoop::on_signal(int signo, SignalCallback cb) {
  sigaddset(&signal_mask_, signo);
  DISPATCHERD_ASSERT(::sigprocmask(SIG_BLOCK, &signal_mask_, nullptr) == 0);
  bool first = !signalfd_.valid();
  int fd = ::signalfd(signalfd_.valid() ? signalfd_.get() : -1, &signal_mask_,
                      SFD_NONBLOCK | SFD_CLOEXEC);
  DISPATCHERD_ASSERT(fd >= 0);
  if (first) {
    signalfd_.reset(fd);
    watch(fd, kReadable, [this](std::uint32_t) { read_signals(); });
  }
  signal_callbacks_[signo] = std::move(cb);
}

void EventLoop::read_signals() {
  signalfd_siginfo info;
  while (::read(signalfd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    auto it = signal_callbacks_.find(static_cast<int>(info.ssi_signo));
    if (it != signal_callbacks_.end()) it->second(info);
  }
}

void EventLoop::every_turn(Callback cb) { chores_.push_back(std::move(cb)); }

void EventLoop::run_once(double max_wait) {
  int timeout_ms = -1;
  if (!deferred_.empty()) {
    timeout_ms = 0;
  } else if (max_wait >= 0) {
    timeout_ms = static_cast<int>(std::ceil(max_wait * 1000));
  }
  epoll_event events[64];
  int n = ::epoll_wait(epoll_.get(), events, 64, timeout_ms);
  if (n < 0 && errno != EINTR) {
    LOG_CRITICAL("epoll_wait failed: " << std::strerror(errno));
    ::abort();
  }
  for (int i = 0; i < n; ++i) {
    auto it = watches_.find(events[i].data.fd);
    if (it == watches_.end()) continue;  // unwatched by an earlier callback this turn
    // Hold the callback alive: it may unwatch (and so destroy) itself while running.
    std::shared_ptr<IoCallback> cb = it->second.cb;
    (*cb)(events[i].events);
  }
  if (!deferred_.empty()) {
    std::vector<Callback> now;
    now.swap(deferred_);
    for (auto& cb : now) cb();
  }
  // Timers whose time came while I/O ran are fired now rather than after another epoll.
  if (!heap_.empty() && heap_.front().when <= mono_now()) fire_timers();
  for (auto& chore : chores_) chore();
}

void EventLoop::run() {
  running_ = true;
  while (running_) run_once(-1);
}

}  // namespace dispatcherd
