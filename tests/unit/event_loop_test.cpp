#include "dispatcherd/loop/event_loop.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <vector>

namespace dispatcherd {
namespace {

TEST(EventLoop, TimersFireInDeadlineOrder) {
  EventLoop loop;
  std::vector<int> order;
  loop.after(0.02, [&] { order.push_back(2); });
  loop.after(0.0, [&] { order.push_back(0); });
  loop.after(0.01, [&] { order.push_back(1); });
  MonoTime deadline = mono_now() + 5;
  while (order.size() < 3 && mono_now() < deadline) loop.run_once(0.1);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
}

TEST(EventLoop, CancelledTimerNeverFires) {
  EventLoop loop;
  bool fired = false, other = false;
  auto id = loop.after(0.0, [&] { fired = true; });
  loop.after(0.01, [&] { other = true; });
  loop.cancel(id);
  MonoTime deadline = mono_now() + 5;
  while (!other && mono_now() < deadline) loop.run_once(0.1);
  EXPECT_TRUE(other);
  EXPECT_FALSE(fired);
  EXPECT_EQ(loop.timer_count(), 0u);
}

TEST(EventLoop, ReadableFdCallsBackAndUnwatchInsideCallbackIsSafe) {
  EventLoop loop;
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  Fd r(p[0]), w(p[1]);
  int calls = 0;
  loop.watch(r.get(), kReadable, [&](std::uint32_t ev) {
    EXPECT_TRUE(ev & kReadable);
    ++calls;
    loop.unwatch(r.get());
  });
  ASSERT_EQ(::write(w.get(), "x", 1), 1);
  loop.run_once(1.0);
  loop.run_once(0.0);
  EXPECT_EQ(calls, 1);
}

TEST(EventLoop, DeferredWorkRunsNextTurnWithoutWaiting) {
  EventLoop loop;
  int runs = 0;
  std::function<void()> step = [&] {
    if (++runs < 3) loop.defer(step);
  };
  loop.defer(step);
  MonoTime start = mono_now();
  for (int i = 0; i < 3; ++i) loop.run_once(10.0);
  EXPECT_EQ(runs, 3);
  EXPECT_LT(mono_now() - start, 5.0);  // never sat in a 10 s epoll_wait
}

TEST(EventLoop, SignalArrivesThroughSignalfd) {
  EventLoop loop;
  int got = 0;
  loop.on_signal(SIGUSR2, [&](const signalfd_siginfo& si) { got = static_cast<int>(si.ssi_signo); });
  ::kill(::getpid(), SIGUSR2);
  MonoTime deadline = mono_now() + 5;
  while (!got && mono_now() < deadline) loop.run_once(0.1);
  EXPECT_EQ(got, SIGUSR2);
}

}  // namespace
}  // namespace dispatcherd
