// SocketBroker (upstream-spec §3.2, §13.1 test_socket, §13.2 item 40) over a real Unix socket
// in a temp dir, driven by EventLoop::run_once. No fork, no Postgres.

#include "dispatcherd/brokers/socket_broker.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "dispatcherd/chunking.h"

namespace dispatcherd {
namespace {

/// A fresh directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sockbrk.XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    EXPECT_NE(p, nullptr);
    path_ = p ? p : "/tmp";
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

Fd connect_to(const std::string& path) {
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) return Fd();
  set_nonblocking(fd.get());
  return fd;
}

void send_all(const Fd& fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd.get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n > 0)
      off += static_cast<std::size_t>(n);
    else if (n < 0 && errno != EAGAIN && errno != EINTR)
      return;
  }
}

/// The test's side of one connection: what it has read so far, split into lines.
struct Peer {
  Fd fd;
  std::string buf;
  bool eof = false;

  void poll() {
    char tmp[65536];
    for (;;) {
      ssize_t n = ::recv(fd.get(), tmp, sizeof tmp, 0);
      if (n > 0) buf.append(tmp, static_cast<std::size_t>(n));
      if (n == 0 || (n < 0 && errno == ECONNRESET)) eof = true;
      if (n <= 0) return;
    }
  }
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    std::size_t start = 0, nl;
    while ((nl = buf.find('\n', start)) != std::string::npos) {
      out.push_back(buf.substr(start, nl - start));
      start = nl + 1;
    }
    return out;
  }
};

/// A broker on a temp path plus what its sink received.
struct Harness {
  TempDir dir;
  EventLoop loop;
  std::vector<std::pair<std::string, std::string>> received;
  std::function<void(std::string_view, std::string_view)> on_line;
  SocketConfig config;
  std::unique_ptr<SocketBroker> broker;

  explicit Harness(SocketBroker::Limits limits = {}) {
    config.enabled = true;
    config.socket_path = dir.file("d.sock");
    broker = std::make_unique<SocketBroker>(
        loop, config, limits, [this](std::string_view origin, std::string_view payload) {
          received.emplace_back(origin, payload);
          if (on_line) on_line(origin, payload);
        });
  }
  /// Turns the loop until `done` or 5 s pass; returns `done()`.
  bool pump(const std::function<bool()>& done) {
    MonoTime deadline = mono_now() + 5;
    while (!done() && mono_now() < deadline) loop.run_once(0.01);
    return done();
  }
  Peer connect() { return Peer{connect_to(config.socket_path), {}, false}; }
};

TEST(SocketBroker, Spec3_2_ClientIdsStartAtZeroInConnectionOrder) {
  Harness h;
  ASSERT_TRUE(h.broker->listen().ok());
  EXPECT_TRUE(h.broker->ready());
  Peer a = h.connect();
  send_all(a.fd, "test1\n");
  ASSERT_TRUE(h.pump([&] { return h.received.size() == 1; }));
  Peer b = h.connect();
  send_all(b.fd, "test2\n");
  ASSERT_TRUE(h.pump([&] { return h.received.size() == 2; }));
  EXPECT_EQ(h.received,
            (std::vector<std::pair<std::string, std::string>>{{"0", "test1"}, {"1", "test2"}}));
  EXPECT_EQ(h.broker->status()["clients_total"], 2);
  EXPECT_EQ(h.broker->status()["produced_count"], 2);
}

TEST(SocketBroker, Spec3_2_ReplyGoesToTheOriginatingClientOnly) {
  Harness h;
  h.on_line = [&](std::string_view origin, std::string_view payload) {
    h.broker->publish(origin, std::string("{\"echo\": \"") + std::string(payload) + "\"}");
  };
  ASSERT_TRUE(h.broker->listen().ok());
  Peer a = h.connect(), b = h.connect();
  ASSERT_TRUE(h.pump([&] { return h.broker->client_count() == 2; }));
  send_all(b.fd, "from-b\n");
  send_all(a.fd, "from-a\r\n\n");  // CRLF and a blank line are tolerated
  ASSERT_TRUE(h.pump([&] {
    a.poll();
    b.poll();
    return a.lines().size() == 1 && b.lines().size() == 1;
  }));
  EXPECT_EQ(a.lines()[0], R"({"echo": "from-a"})");
  EXPECT_EQ(b.lines()[0], R"({"echo": "from-b"})");
}

TEST(SocketBroker, Spec13_2_40_LargeReplyArrivesAsChunkLines) {
  Harness h;
  ASSERT_TRUE(h.broker->listen().ok());
  Peer a = h.connect();
  send_all(a.fd, "{\"control\": \"status\"}\n");
  ASSERT_TRUE(h.pump([&] { return h.received.size() == 1; }));
  std::string reply = nlohmann::json({{"big", std::string(5000, 'x')}, {"node_id", "n1"}}).dump();
  h.broker->publish("0", reply);
  ChunkAccumulator acc;
  nlohmann::json assembled;
  std::size_t used = 0;
  ASSERT_TRUE(h.pump([&] {
    a.poll();
    auto lines = a.lines();
    for (; used < lines.size(); ++used) {
      EXPECT_LE(lines[used].size(), kSocketMaxBytes);
      auto in = acc.ingest(nlohmann::json::parse(lines[used]), 0);
      EXPECT_NE(in.outcome, ChunkAccumulator::Outcome::NotChunk);
      EXPECT_NE(in.outcome, ChunkAccumulator::Outcome::Error);
      if (in.outcome == ChunkAccumulator::Outcome::Complete) assembled = in.message;
    }
    return !assembled.is_null();
  }));
  EXPECT_GT(a.lines().size(), 1u);
  EXPECT_EQ(assembled, nlohmann::json::parse(reply));
}

TEST(SocketBroker, Spec3_2_SmallReplyIsOneUnchunkedLine) {
  Harness h;
  ASSERT_TRUE(h.broker->listen().ok());
  Peer a = h.connect();
  ASSERT_TRUE(h.pump([&] { return h.broker->client_count() == 1; }));
  h.broker->publish("0", R"({"node_id": "n1"})");
  ASSERT_TRUE(h.pump([&] {
    a.poll();
    return !a.lines().empty();
  }));
  EXPECT_EQ(a.lines(), (std::vector<std::string>{R"({"node_id": "n1"})"}));
}

TEST(SocketBroker, Spec3_2_FileHasMode0600AndIsRemovedOnStop) {
  Harness h;
  ASSERT_TRUE(h.broker->listen().ok());
  struct stat st {};
  ASSERT_EQ(::stat(h.config.socket_path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  h.broker->stop();
  EXPECT_FALSE(h.broker->ready());
  EXPECT_FALSE(std::filesystem::exists(h.config.socket_path));
}

TEST(SocketBroker, ModeIsConfigurable) {
  SocketBroker::Limits limits;
  limits.mode = 0660;
  Harness h(limits);
  ASSERT_TRUE(h.broker->listen().ok());
  struct stat st {};
  ASSERT_EQ(::stat(h.config.socket_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST(SocketBroker, Spec3_2_StaleFileFromDeadServerIsReplaced) {
  Harness h;
  {
    // A crashed run: bound, then closed without unlinking.
    Fd dead(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, h.config.socket_path.data(), h.config.socket_path.size());
    ASSERT_EQ(::bind(dead.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  }
  ASSERT_TRUE(std::filesystem::exists(h.config.socket_path));
  Status s = h.broker->listen();
  ASSERT_TRUE(s.ok()) << s.error().message;
  Peer a = h.connect();
  send_all(a.fd, "hi\n");
  EXPECT_TRUE(h.pump([&] { return h.received.size() == 1; }));
}

TEST(SocketBroker, LiveServerOnThePathMakesListenFail) {
  Harness h;
  ASSERT_TRUE(h.broker->listen().ok());
  SocketBroker second(h.loop, h.config, {}, [](std::string_view, std::string_view) {});
  Status s = second.listen();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("already listening"), std::string::npos) << s.error().message;
  second.start();  // logs, does not throw
  EXPECT_FALSE(second.ready());
  EXPECT_TRUE(second.status().contains("error"));
  second.stop();  // must not remove the live server's file
  EXPECT_TRUE(std::filesystem::exists(h.config.socket_path));
  Peer a = h.connect();
  send_all(a.fd, "still-here\n");
  EXPECT_TRUE(h.pump([&] { return h.received.size() == 1; }));
}

TEST(SocketBroker, NonSocketFileIsNeverDeleted) {
  Harness h;
  std::ofstream(h.config.socket_path) << "precious";
  Status s = h.broker->listen();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("not a socket"), std::string::npos);
  EXPECT_TRUE(std::filesystem::is_regular_file(h.config.socket_path));
}

TEST(SocketBroker, ClientsOverTheLimitAreClosedAtOnce) {
  SocketBroker::Limits limits;
  limits.max_clients = 2;
  Harness h(limits);
  ASSERT_TRUE(h.broker->listen().ok());
  Peer a = h.connect(), b = h.connect();
  ASSERT_TRUE(h.pump([&] { return h.broker->client_count() == 2; }));
  Peer c = h.connect();
  ASSERT_TRUE(h.pump([&] {
    c.poll();
    return c.eof;
  }));
  EXPECT_EQ(h.broker->status()["rejected_clients"], 1);
  EXPECT_EQ(h.broker->client_count(), 2u);
  send_all(b.fd, "ok\n");
  ASSERT_TRUE(h.pump([&] { return h.received.size() == 1; }));
  EXPECT_EQ(h.received[0].first, "1");  // the refused connection took no id
}

TEST(SocketBroker, OverlongLineDisconnectsOnlyThatClient) {
  SocketBroker::Limits limits;
  limits.max_line_bytes = 100;
  Harness h(limits);
  ASSERT_TRUE(h.broker->listen().ok());
  Peer a = h.connect(), b = h.connect(), c = h.connect();
  ASSERT_TRUE(h.pump([&] { return h.broker->client_count() == 3; }));
  send_all(a.fd, std::string(101, 'a') + "\n");  // a complete line too long
  send_all(b.fd, std::string(500, 'b'));         // no newline yet, already too long
  send_all(c.fd, std::string(100, 'c') + "\n");  // exactly at the limit: fine
  ASSERT_TRUE(h.pump([&] {
    a.poll();
    b.poll();
    return a.eof && b.eof && h.received.size() == 1;
  }));
  EXPECT_EQ(h.received[0].first, "2");
  EXPECT_EQ(h.broker->status()["oversized_lines"], 2);
  EXPECT_EQ(h.broker->client_count(), 1u);
}

TEST(SocketBroker, ClientThatStopsReadingIsDroppedWithoutBlockingOthers) {
  SocketBroker::Limits limits;
  limits.max_output_bytes = 256u << 10;
  Harness h(limits);
  ASSERT_TRUE(h.broker->listen().ok());
  Peer lazy = h.connect(), good = h.connect();
  ASSERT_TRUE(h.pump([&] { return h.broker->client_count() == 2; }));
  const std::string big = nlohmann::json({{"pad", std::string(100000, 'p')}}).dump();
  for (int i = 0; i < 40 && h.broker->client_count() == 2; ++i) {
    h.broker->publish("0", big);  // never read by `lazy`
    h.loop.run_once(0);
  }
  EXPECT_EQ(h.broker->client_count(), 1u);
  EXPECT_GE(h.broker->status()["slow_client_disconnects"].get<int>(), 1);
  h.broker->publish("1", R"({"node_id": "n1"})");
  EXPECT_TRUE(h.pump([&] {
    good.poll();
    return good.lines().size() == 1;
  }));
}

TEST(SocketBroker, ChattyClientIsServedInTurnsAndOthersGetThrough) {
  SocketBroker::Limits limits;
  limits.lines_per_turn = 10;
  Harness h(limits);
  ASSERT_TRUE(h.broker->listen().ok());
  Peer chatty = h.connect(), quiet = h.connect();
  ASSERT_TRUE(h.pump([&] { return h.broker->client_count() == 2; }));
  std::string burst;
  for (int i = 0; i < 1000; ++i) burst += "line" + std::to_string(i) + "\n";
  send_all(chatty.fd, burst);
  send_all(quiet.fd, "quiet\n");
  auto quiet_seen = [&] {
    for (auto& r : h.received)
      if (r.first == "1") return true;
    return false;
  };
  ASSERT_TRUE(h.pump(quiet_seen));
  EXPECT_LT(h.received.size(), 100u);  // the quiet line did not wait behind 1000 lines
  ASSERT_TRUE(h.pump([&] { return h.received.size() == 1001; }));
  std::vector<std::string> chatty_lines;
  for (auto& r : h.received)
    if (r.first == "0") chatty_lines.push_back(r.second);
  ASSERT_EQ(chatty_lines.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(chatty_lines[i], "line" + std::to_string(i));
}

TEST(SocketBroker, HalfClosedClientStillGetsItsReply) {
  Harness h;
  h.on_line = [&](std::string_view origin, std::string_view) {
    h.broker->publish(origin, R"({"node_id": "n1"})");
  };
  ASSERT_TRUE(h.broker->listen().ok());
  Peer a = h.connect();
  send_all(a.fd, R"({"control": "alive", "reply_to": "x"})");  // no newline, then EOF
  ::shutdown(a.fd.get(), SHUT_WR);
  ASSERT_TRUE(h.pump([&] {
    a.poll();
    return a.eof;
  }));
  EXPECT_EQ(h.received.size(), 1u);
  EXPECT_EQ(a.lines(), (std::vector<std::string>{R"({"node_id": "n1"})"}));
  EXPECT_EQ(h.broker->client_count(), 0u);
}

TEST(SocketBroker, DisconnectClosesJustThatClientAndLateRepliesAreDropped) {
  Harness h;
  ASSERT_TRUE(h.broker->listen().ok());
  Peer a = h.connect(), b = h.connect();
  ASSERT_TRUE(h.pump([&] { return h.broker->client_count() == 2; }));
  a.fd.reset();
  ASSERT_TRUE(h.pump([&] { return h.broker->client_count() == 1; }));
  h.broker->publish("0", "{}");
  h.broker->publish("not-a-client", "{}");
  EXPECT_EQ(h.broker->status()["dropped_replies"], 2);
  Peer c = h.connect();
  send_all(c.fd, "x\n");
  ASSERT_TRUE(h.pump([&] { return h.received.size() == 1; }));
  EXPECT_EQ(h.received[0].first, "2");  // ids are never reused
}

TEST(SocketBroker, StatusHasUpstreamAndOwnFields) {
  Harness h;
  ASSERT_TRUE(h.broker->listen().ok());
  nlohmann::json s = h.broker->status();
  for (const char* key : {"produced_count", "recycle_count", "uptime_seconds", "clients",
                          "clients_total", "rejected_clients", "oversized_lines"})
    EXPECT_TRUE(s.contains(key)) << key;
  EXPECT_EQ(s["recycle_count"], 0);
  EXPECT_EQ(h.broker->name(), "socket");
}

TEST(SocketBroker, DestructorRemovesTheFile) {
  TempDir dir;
  EventLoop loop;
  SocketConfig config{true, dir.file("x.sock")};
  {
    SocketBroker b(loop, config, {}, [](std::string_view, std::string_view) {});
    b.start();
    ASSERT_TRUE(b.ready());
    ASSERT_TRUE(std::filesystem::exists(config.socket_path));
  }
  EXPECT_FALSE(std::filesystem::exists(config.socket_path));
}

}  // namespace
}  // namespace dispatcherd
