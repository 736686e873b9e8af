// The /metrics HTTP server against real sockets on 127.0.0.1, driven by EventLoop::run_once
// from the test thread (no fork, no threads).

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dispatcherd/loop/event_loop.h"
#include "dispatcherd/metrics/http_server.h"
#include "dispatcherd/metrics/metrics_registry.h"
#include "dispatcherd/metrics/upstream_families.h"

namespace dispatcherd::metrics {
namespace {

const std::string kBody = "# HELP x X.\n# TYPE x counter\nx 1.0\n";

/// What a client read before the server closed (or the wait ran out).
struct Reply {
  std::string bytes;
  bool eof = false;
  bool reset = false;
};

class MetricsHttp : public ::testing::Test {
 protected:
  void start(HttpServerOptions opts = {}, std::string host = "127.0.0.1") {
    MetricsConfig cfg;
    cfg.enabled = true;
    cfg.host = std::move(host);
    cfg.port = 0;
    server_ = std::make_unique<MetricsHttpServer>(
        loop_, cfg,
        [this]() -> std::optional<std::string> {
          if (throw_) throw std::runtime_error("boom");
          return body_;
        },
        opts);
    ASSERT_TRUE(server_->start());
    ASSERT_GT(server_->port(), 0);
  }

  Fd connect_client() {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<std::uint16_t>(server_->port()));
    ::inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
    set_nonblocking(fd.get());
    return fd;
  }

  static void send_all(int fd, const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << std::strerror(errno);
      off += static_cast<std::size_t>(n);
    }
  }

  /// Reads what is available on `fd` into `r`; returns true once EOF or a reset was seen.
  static bool pump(int fd, Reply& r) {
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        r.bytes.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0) return r.eof = true;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      return r.reset = true;
    }
  }

  /// Turns the loop until the server closes `fd` (or `timeout` passes).
  Reply read_reply(int fd, double timeout = 5) {
    Reply r;
    MonoTime deadline = mono_now() + timeout;
    while (mono_now() < deadline) {
      loop_.run_once(0.01);
      if (pump(fd, r)) break;
    }
    return r;
  }

  /// One whole exchange: connect, send `request`, read until closed.
  Reply exchange(const std::string& request) {
    Fd fd = connect_client();
    send_all(fd.get(), request);
    return read_reply(fd.get());
  }

  static std::string response(const std::string& status, const std::string& body,
                              const std::string& type = "text/plain; charset=utf-8") {
    return "HTTP/1.1 " + status + "\r\nContent-Type: " + type +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
           body;
  }

  const HttpServerCounters& counters() const { return server_->counters(); }

  void turn_until(const std::function<bool()>& done, double timeout = 5) {
    MonoTime deadline = mono_now() + timeout;
    while (!done() && mono_now() < deadline) loop_.run_once(0.01);
  }

  EventLoop loop_;
  std::unique_ptr<MetricsHttpServer> server_;
  std::optional<std::string> body_ = kBody;
  bool throw_ = false;
};

TEST_F(MetricsHttp, Spec10_GetMetricsIs200WithVersionedContentType) {
  Registry reg;
  register_upstream_families(reg, {[] { return 9.0; }, [] { return 8.0; }, [] { return 2.0; }});
  body_ = reg.render();
  start();
  Reply r = exchange("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
  EXPECT_TRUE(r.eof);
  EXPECT_EQ(r.bytes, response("200 OK", *body_, "text/plain; version=0.0.4; charset=utf-8"));
  EXPECT_EQ(counters().metrics_requests_served, 1u);
  EXPECT_EQ(counters().connections_total, 1u);
}

TEST_F(MetricsHttp, Spec10_BareLineFeedsAreAccepted) {
  start();
  Reply r = exchange("GET /metrics HTTP/1.0\n\n");
  EXPECT_EQ(r.bytes, response("200 OK", kBody, "text/plain; version=0.0.4; charset=utf-8"));
}

TEST_F(MetricsHttp, Spec10_PostIs404) {
  start();
  EXPECT_EQ(exchange("POST /metrics HTTP/1.1\r\n\r\n").bytes,
            response("404 Not Found", "Not Found"));
  EXPECT_EQ(exchange("GET /foo HTTP/1.1\r\n\r\n").bytes, response("404 Not Found", "Not Found"));
  EXPECT_EQ(exchange("get /metrics HTTP/1.1\r\n\r\n").bytes,
            response("404 Not Found", "Not Found"));
  EXPECT_EQ(counters().not_found_responses, 3u);
  EXPECT_EQ(counters().metrics_requests_served, 0u);
}

TEST_F(MetricsHttp, Spec10_QueryStringIs404) {
  start();
  EXPECT_EQ(exchange("GET /metrics?x=1 HTTP/1.1\r\n\r\n").bytes,
            response("404 Not Found", "Not Found"));
  EXPECT_EQ(exchange("GET /metrics/ HTTP/1.1\r\n\r\n").bytes,
            response("404 Not Found", "Not Found"));
}

TEST_F(MetricsHttp, Spec10_InvalidUtf8RequestLineIs400) {
  start();
  Reply r = exchange("GE\xffT /metrics HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(r.eof);
  EXPECT_EQ(r.bytes, response("400 Bad Request", "Bad Request"));
  EXPECT_EQ(counters().bad_requests, 1u);
}

TEST_F(MetricsHttp, Spec10_FewerThanThreePartsIs400) {
  start();
  EXPECT_EQ(exchange("GET /metrics\r\n\r\n").bytes, response("400 Bad Request", "Bad Request"));
  EXPECT_EQ(exchange("\r\n").bytes, response("400 Bad Request", "Bad Request"));
  EXPECT_EQ(counters().bad_requests, 2u);
}

TEST_F(MetricsHttp, Spec10_SilentClientGets408) {
  HttpServerOptions opts;
  opts.read_timeout = 0.2;
  start(opts);
  Fd fd = connect_client();
  MonoTime t0 = mono_now();
  Reply r = read_reply(fd.get());
  double waited = mono_now() - t0;
  EXPECT_EQ(r.bytes, response("408 Request Timeout", "Request Timeout"));
  EXPECT_GE(waited, 0.19);
  EXPECT_LT(waited, 2.0);
  EXPECT_EQ(counters().request_timeouts, 1u);
}

TEST_F(MetricsHttp, Spec10_EachHeaderLineHasItsOwnTimeout) {
  HttpServerOptions opts;
  opts.read_timeout = 0.3;
  start(opts);
  Fd fd = connect_client();
  // Lines 0.2 s apart: every line resets the clock, so 0.6 s in total is fine.
  for (const char* line : {"GET /metrics HTTP/1.1\r\n", "Host: x\r\n", "A: b\r\n"}) {
    send_all(fd.get(), line);
    MonoTime until = mono_now() + 0.2;
    while (mono_now() < until) loop_.run_once(0.01);
  }
  EXPECT_EQ(counters().request_timeouts, 0u);
  // Then silence in the headers: 408.
  Reply r = read_reply(fd.get());
  EXPECT_EQ(r.bytes, response("408 Request Timeout", "Request Timeout"));
  EXPECT_EQ(counters().request_timeouts, 1u);
}

TEST_F(MetricsHttp, Spec10_EofBeforeRequestClosesSilently) {
  start();
  Fd fd = connect_client();
  ::shutdown(fd.get(), SHUT_WR);
  Reply r = read_reply(fd.get());
  EXPECT_TRUE(r.eof);
  EXPECT_EQ(r.bytes, "");
  EXPECT_EQ(counters().client_disconnects, 1u);
  EXPECT_EQ(server_->open_connections(), 0u);
}

TEST_F(MetricsHttp, Spec10_EofBeforeBlankLineClosesSilently) {
  start();
  Fd fd = connect_client();
  send_all(fd.get(), "GET /metrics HTTP/1.1\r\nHost: x\r\n");
  ::shutdown(fd.get(), SHUT_WR);
  Reply r = read_reply(fd.get());
  EXPECT_TRUE(r.eof);
  EXPECT_EQ(r.bytes, "");
  EXPECT_EQ(counters().client_disconnects, 1u);
  EXPECT_EQ(counters().metrics_requests_served, 0u);
}

TEST_F(MetricsHttp, Spec10_RequestLineCutByEofIsStillParsed) {
  // Python's readline() returns the partial line at EOF: a bad one still earns its 400.
  start();
  Fd fd = connect_client();
  send_all(fd.get(), "GET");
  ::shutdown(fd.get(), SHUT_WR);
  EXPECT_EQ(read_reply(fd.get()).bytes, response("400 Bad Request", "Bad Request"));
}

TEST_F(MetricsHttp, Spec10_RenderFailureIs500) {
  start();
  body_ = std::nullopt;
  EXPECT_EQ(exchange("GET /metrics HTTP/1.1\r\n\r\n").bytes,
            response("500 Internal Server Error", "Error generating metrics"));
  throw_ = true;
  EXPECT_EQ(exchange("GET /metrics HTTP/1.1\r\n\r\n").bytes,
            response("500 Internal Server Error", "Error generating metrics"));
  EXPECT_EQ(counters().internal_errors, 2u);
}

TEST_F(MetricsHttp, Design8_ConnectionsAreBounded) {
  HttpServerOptions opts;
  opts.max_connections = 4;
  opts.read_timeout = 0.3;
  start(opts);
  std::vector<Fd> idle;
  for (int i = 0; i < 4 + 5; ++i) idle.push_back(connect_client());
  turn_until([&] { return counters().connections_total == 9; });
  EXPECT_EQ(server_->open_connections(), 4u);
  EXPECT_EQ(counters().rejected_connections, 5u);
  // The extra five were closed at once, without a response.
  for (std::size_t i = 4; i < idle.size(); ++i) {
    Reply r;
    EXPECT_TRUE(pump(idle[i].get(), r)) << i;
    EXPECT_EQ(r.bytes, "");
  }
  // The four idle ones time out (408) and free their slots; then a scrape works.
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(read_reply(idle[i].get()).bytes, response("408 Request Timeout", "Request Timeout"));
  }
  idle.clear();
  turn_until([&] { return server_->open_connections() == 0; });
  EXPECT_EQ(exchange("GET /metrics HTTP/1.1\r\n\r\n").bytes,
            response("200 OK", kBody, "text/plain; version=0.0.4; charset=utf-8"));
  EXPECT_EQ(counters().request_timeouts, 4u);
}

TEST_F(MetricsHttp, Design8_OversizedRequestHeadIs400) {
  HttpServerOptions opts;
  opts.max_head_bytes = 1024;
  start(opts);
  Reply r = exchange("GET /metrics HTTP/1.1\r\nX: " + std::string(2000, 'a') + "\r\n\r\n");
  EXPECT_EQ(r.bytes, response("400 Bad Request", "Bad Request"));
  EXPECT_EQ(counters().bad_requests, 1u);
}

TEST_F(MetricsHttp, Design8_UnreadInputDoesNotResetTheResponse) {
  // A 400 is sent before the rest of the request is read; closing with unread input would
  // RST the connection and could destroy the answer, so the server drains before closing.
  start();
  Reply r = exchange("GE\xffT /metrics HTTP/1.1\r\n" + std::string(32768, 'x'));
  EXPECT_FALSE(r.reset);
  EXPECT_EQ(r.bytes, response("400 Bad Request", "Bad Request"));
}

TEST_F(MetricsHttp, Design8_LargeResponseIsWrittenWithoutBlocking) {
  body_ = std::string(8 << 20, 'm');
  start();
  Reply r = exchange("GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(r.eof);
  EXPECT_EQ(r.bytes.size(),
            response("200 OK", *body_, "text/plain; version=0.0.4; charset=utf-8").size());
}

TEST_F(MetricsHttp, RequestSentByteByByteIsServed) {
  start();
  Fd fd = connect_client();
  for (char ch : std::string("GET /metrics HTTP/1.1\r\nHost: y\r\n\r\n")) {
    send_all(fd.get(), std::string(1, ch));
    loop_.run_once(0);
  }
  EXPECT_EQ(read_reply(fd.get()).bytes,
            response("200 OK", kBody, "text/plain; version=0.0.4; charset=utf-8"));
}

TEST_F(MetricsHttp, Spec44_StatusHasUpstreamShapeAndCountersMove) {
  MetricsConfig cfg;
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  MetricsHttpServer before(loop_, cfg, [] { return std::optional<std::string>(""); });
  EXPECT_EQ(before.status(), (nlohmann::json{{"host", "127.0.0.1"},
                                             {"port", 0},
                                             {"ready", false},
                                             {"http_server", nlohmann::json::object()}}));
  start();
  exchange("GET /metrics HTTP/1.1\r\n\r\n");
  exchange("GET /nope HTTP/1.1\r\n\r\n");
  exchange("x\r\n");
  nlohmann::json s = server_->status();
  EXPECT_EQ(s["host"], "127.0.0.1");
  EXPECT_EQ(s["port"], server_->port());
  EXPECT_EQ(s["ready"], true);
  EXPECT_EQ(s["http_server"], (nlohmann::json{{"connections_total", 3},
                                              {"metrics_requests_served", 1},
                                              {"bad_requests", 1},
                                              {"internal_errors", 0},
                                              {"not_found_responses", 1},
                                              {"client_disconnects", 0},
                                              {"request_timeouts", 0},
                                              {"is_running", true},
                                              {"rejected_connections", 0}}));
  server_->stop();
  server_->stop();  // idempotent
  EXPECT_EQ(server_->status()["http_server"]["is_running"], false);
}

TEST_F(MetricsHttp, Spec10_BindFailureIsToleratedReadyButNotRunning) {
  start();
  MetricsConfig cfg;
  cfg.host = "127.0.0.1";
  cfg.port = server_->port();  // already taken
  MetricsHttpServer second(loop_, cfg, [] { return std::optional<std::string>(""); });
  EXPECT_FALSE(second.start());
  EXPECT_TRUE(second.ready());
  EXPECT_FALSE(second.is_running());
  EXPECT_EQ(second.status()["ready"], true);
  EXPECT_EQ(second.status()["http_server"]["is_running"], false);
  EXPECT_EQ(second.status()["port"], cfg.port);
}

TEST_F(MetricsHttp, LocalhostListensOnLoopback) {
  start({}, "localhost");
  EXPECT_EQ(exchange("GET /metrics HTTP/1.1\r\n\r\n").bytes,
            response("200 OK", kBody, "text/plain; version=0.0.4; charset=utf-8"));
}

TEST_F(MetricsHttp, StopClosesOpenConnections) {
  start();
  Fd fd = connect_client();
  turn_until([&] { return server_->open_connections() == 1; });
  server_->stop();
  Reply r;
  EXPECT_TRUE(pump(fd.get(), r));
  EXPECT_EQ(r.bytes, "");
  EXPECT_EQ(server_->open_connections(), 0u);
}

// ---- request-line rules, without sockets ----

TEST(MetricsHttpRequestLine, Spec10_SplitsLikePythonStrSplit) {
  RequestLine rl;
  EXPECT_EQ(parse_request_line("GET /metrics HTTP/1.1\r\n", rl), RequestLineVerdict::kOk);
  EXPECT_EQ(rl.method, "GET");
  EXPECT_EQ(rl.path, "/metrics");
  EXPECT_EQ(parse_request_line("  GET\t/metrics   HTTP/1.1 extra\n", rl), RequestLineVerdict::kOk);
  EXPECT_EQ(rl.path, "/metrics");
  // Python's str.split() also splits on Unicode whitespace such as U+00A0.
  EXPECT_EQ(parse_request_line("GET\xc2\xa0/metrics\xc2\xa0HTTP/1.1", rl), RequestLineVerdict::kOk);
  EXPECT_EQ(rl.path, "/metrics");
  EXPECT_EQ(parse_request_line("GET /metrics\r\n", rl), RequestLineVerdict::kTooFewParts);
  EXPECT_EQ(parse_request_line("   \r\n", rl), RequestLineVerdict::kTooFewParts);
}

TEST(MetricsHttpRequestLine, Spec10_Utf8IsStrict) {
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("GE\xffT"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xe2\x82"));          // truncated
  RequestLine rl;
  EXPECT_EQ(parse_request_line("GE\xffT /metrics HTTP/1.1\r\n", rl),
            RequestLineVerdict::kInvalidUtf8);
}

}  // namespace
}  // namespace dispatcherd::metrics
