#include "dispatcherd/metrics/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "dispatcherd/log.h"

namespace dispatcherd::metrics {

namespace {

constexpr const char* kPlainText = "text/plain; charset=utf-8";
constexpr const char* kMetricsText = "text/plain; version=0.0.4; charset=utf-8";

/// One address to listen on, port still to be filled in.
struct ListenAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
};

ListenAddr ipv4(const char* text) {
  ListenAddr a;
  auto* sin = reinterpret_cast<sockaddr_in*>(&a.ss);
  sin->sin_family = AF_INET;
  ::inet_pton(AF_INET, text, &sin->sin_addr);
  a.len = sizeof(sockaddr_in);
  return a;
}

ListenAddr ipv6(const char* text) {
  ListenAddr a;
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  sin6->sin6_family = AF_INET6;
  ::inet_pton(AF_INET6, text, &sin6->sin6_addr);
  a.len = sizeof(sockaddr_in6);
  return a;
}

/// Where upstream's asyncio.start_server would listen for `host`: every address it
/// resolves to. "localhost" is answered without the resolver (127.0.0.1 and ::1), and ""
/// means every interface.
std::vector<ListenAddr> resolve(const std::string& host) {
  if (host == "localhost") return {ipv4("127.0.0.1"), ipv6("::1")};
  if (host.empty()) return {ipv4("0.0.0.0"), ipv6("::")};
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  std::vector<ListenAddr> out;
  if (rc != 0) {
    LOG_ERROR("metrics: cannot resolve host " << host << ": " << ::gai_strerror(rc));
    return out;
  }
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    ListenAddr a;
    std::memcpy(&a.ss, ai->ai_addr, ai->ai_addrlen);
    a.len = ai->ai_addrlen;
    bool dup = false;
    for (const auto& o : out)
      dup = dup || (o.len == a.len && std::memcmp(&o.ss, &a.ss, a.len) == 0);
    if (!dup) out.push_back(a);
  }
  ::freeaddrinfo(res);
  return out;
}

void set_port(ListenAddr& a, int port) {
  auto p = htons(static_cast<std::uint16_t>(port));
  if (a.ss.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&a.ss)->sin_port = p;
  } else {
    reinterpret_cast<sockaddr_in6*>(&a.ss)->sin6_port = p;
  }
}

int port_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

/// A listening socket on `a`, or an invalid Fd with errno set.
Fd listen_on(const ListenAddr& a) {
  Fd fd(::socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // Like asyncio: an IPv6 socket serves IPv6 only, so it never collides with the IPv4 one.
  if (a.ss.ss_family == AF_INET6)
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a.ss), a.len) != 0 ||
      ::listen(fd.get(), 128) != 0) {
    int err = errno;
    fd.reset();
    errno = err;
  }
  return fd;
}

}  // namespace

MetricsHttpServer::MetricsHttpServer(EventLoop& loop, MetricsConfig config, RenderFn render,
                                     HttpServerOptions options)
    : loop_(loop), config_(std::move(config)), render_(std::move(render)), options_(options) {}

MetricsHttpServer::~MetricsHttpServer() {
  stop();
}

bool MetricsHttpServer::start() {
  if (ready_) return running_;
  ready_ = true;  // upstream sets its ready event whether or not the bind worked
  if (!bind_all()) return false;
  for (const Fd& l : listeners_) {
    int fd = l.get();
    loop_.watch(fd, kReadable, [this, fd](std::uint32_t) { on_accept(fd); });
  }
  running_ = true;
  LOG_INFO("Serving dispatcherd metrics on " << config_.host << ":" << bound_port_);
  return true;
}

bool MetricsHttpServer::bind_all() {
  std::vector<ListenAddr> addrs = resolve(config_.host);
  int port = config_.port;
  for (ListenAddr& a : addrs) {
    set_port(a, port);
    Fd fd = listen_on(a);
    if (!fd) {
      int err = errno;
      // A host without IPv6 cannot bind ::1; that address is optional, like a missing AAAA.
      if (a.ss.ss_family == AF_INET6 && (err == EADDRNOTAVAIL || err == EAFNOSUPPORT)) {
        LOG_DEBUG("metrics: skipping an IPv6 address of " << config_.host << ": "
                                                          << std::strerror(err));
        continue;
      }
      LOG_ERROR("Failed to start metrics server on " << config_.host << ":" << config_.port << ": "
                                                     << std::strerror(err));
      listeners_.clear();
      return false;
    }
    // Port 0: every further address listens on the port the kernel picked for the first.
    if (port == 0) port = port_of(fd.get());
    listeners_.push_back(std::move(fd));
  }
  if (listeners_.empty()) {
    LOG_ERROR("Failed to start metrics server on " << config_.host << ":" << config_.port
                                                   << ": no usable address");
    return false;
  }
  bound_port_ = port;
  return true;
}

void MetricsHttpServer::stop() {
  if (resume_timer_ != 0) loop_.cancel(resume_timer_);
  resume_timer_ = 0;
  for (const Fd& l : listeners_) loop_.unwatch(l.get());
  listeners_.clear();
  while (!conns_.empty()) close_conn(conns_.begin()->first);
  running_ = false;
}

void MetricsHttpServer::pause_accepting() {
  // Out of fds: the pending connection stays readable and level-triggered epoll would spin,
  // so stop watching the listeners for a moment instead.
  for (const Fd& l : listeners_) loop_.unwatch(l.get());
  resume_timer_ = loop_.after(0.1, [this] {
    resume_timer_ = 0;
    for (const Fd& l : listeners_) {
      int fd = l.get();
      loop_.watch(fd, kReadable, [this, fd](std::uint32_t) { on_accept(fd); });
    }
  });
}

void MetricsHttpServer::on_accept(int listen_fd) {
  for (std::size_t i = 0; i < options_.accept_budget; ++i) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      LOG_WARNING("metrics: accept failed: " << std::strerror(errno));
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        pause_accepting();
      }
      return;
    }
    Fd owned(fd);
    ++counters_.connections_total;
    if (conns_.size() >= options_.max_connections) {
      ++counters_.rejected_connections;
      LOG_DEBUG("metrics: " << conns_.size() << " connections open, closing a new one");
      continue;  // `owned` closes it
    }
    auto conn = std::make_unique<Conn>();
    conn->id = next_id_++;
    conn->fd = std::move(owned);
    std::uint64_t id = conn->id;
    Conn& c = *conn;
    conns_.emplace(id, std::move(conn));
    loop_.watch(fd, kReadable, [this, id](std::uint32_t events) { on_io(id, events); });
    set_deadline(c, options_.read_timeout);
  }
}

MetricsHttpServer::Conn* MetricsHttpServer::find(std::uint64_t id) {
  auto it = conns_.find(id);
  return it == conns_.end() ? nullptr : it->second.get();
}

void MetricsHttpServer::close_conn(std::uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  if (c.timer != 0) loop_.cancel(c.timer);
  loop_.unwatch(c.fd.get());
  conns_.erase(it);  // closes the fd
}

void MetricsHttpServer::set_deadline(Conn& c, double seconds) {
  // One timer per connection: extending a deadline only moves `deadline`, and the timer
  // re-arms itself when it fires early. A deadline moved earlier needs a new timer.
  c.deadline = loop_.now() + seconds;
  if (c.timer != 0 && c.timer_at <= c.deadline) return;
  if (c.timer != 0) loop_.cancel(c.timer);
  std::uint64_t id = c.id;
  c.timer_at = c.deadline;
  c.timer = loop_.at(c.deadline, [this, id] { on_timer(id); });
}

void MetricsHttpServer::on_timer(std::uint64_t id) {
  Conn* c = find(id);
  if (c == nullptr) return;
  c->timer = 0;
  if (loop_.now() < c->deadline) {
    c->timer_at = c->deadline;
    c->timer = loop_.at(c->deadline, [this, id] { on_timer(id); });
    return;
  }
  switch (c->phase) {
    case Phase::kRequestLine:
    case Phase::kHeaders:
      ++counters_.request_timeouts;
      LOG_DEBUG("metrics: request timed out on connection " << id);
      respond(*c, "HTTP/1.1 408 Request Timeout", "Request Timeout", kPlainText);
      return;
    case Phase::kWriting:
      LOG_DEBUG("metrics: client stopped reading the response, closing " << id);
      close_conn(id);
      return;
    case Phase::kLingering:
      close_conn(id);
      return;
  }
}

void MetricsHttpServer::on_io(std::uint64_t id, std::uint32_t /*events*/) {
  Conn* c = find(id);
  if (c == nullptr) return;
  // Errors and hang-ups surface through recv()/send() below, so the bits are not needed.
  switch (c->phase) {
    case Phase::kRequestLine:
    case Phase::kHeaders:
      read_request(*c);
      return;
    case Phase::kWriting:
      flush(*c);
      return;
    case Phase::kLingering:
      drain_lingering(*c);
      return;
  }
}

void MetricsHttpServer::read_request(Conn& c) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      if (!consume(c, buf, static_cast<std::size_t>(n))) return;  // answered (or closed)
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    // EOF or reset. Like Python's readline(), a request line cut short by EOF still counts
    // as a request line (and may earn a 400); EOF anywhere else ends silently.
    if (n == 0 && c.phase == Phase::kRequestLine && !c.line.empty()) {
      if (!handle_line(c)) return;
    }
    ++counters_.client_disconnects;
    LOG_DEBUG("metrics: client closed connection " << c.id << " before a complete request");
    close_conn(c.id);
    return;
  }
}

bool MetricsHttpServer::consume(Conn& c, const char* data, std::size_t n) {
  std::size_t i = 0;
  while (i < n) {
    const void* nl = std::memchr(data + i, '\n', n - i);
    std::size_t take =
        nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - (data + i)) + 1 : n - i;
    c.head_bytes += take;
    if (c.head_bytes > options_.max_head_bytes) {
      ++counters_.bad_requests;
      LOG_DEBUG("metrics: request head over " << options_.max_head_bytes << " bytes on " << c.id);
      respond(c, "HTTP/1.1 400 Bad Request", "Bad Request", kPlainText);
      return false;
    }
    c.line.append(data + i, take);
    i += take;
    if (nl != nullptr) {
      if (!handle_line(c)) return false;
    }
  }
  return true;
}

bool MetricsHttpServer::handle_line(Conn& c) {
  if (c.phase == Phase::kRequestLine) {
    if (parse_request_line(c.line, c.request) != RequestLineVerdict::kOk) {
      ++counters_.bad_requests;
      LOG_DEBUG("metrics: bad request line on connection " << c.id);
      respond(c, "HTTP/1.1 400 Bad Request", "Bad Request", kPlainText);
      return false;
    }
    c.phase = Phase::kHeaders;
  } else if (is_blank_header_line(c.line)) {
    dispatch(c);
    return false;
  }
  c.line.clear();
  set_deadline(c, options_.read_timeout);  // upstream's timeout is per line
  return true;
}

void MetricsHttpServer::dispatch(Conn& c) {
  if (c.request.method != "GET" || c.request.path != "/metrics") {
    ++counters_.not_found_responses;
    respond(c, "HTTP/1.1 404 Not Found", "Not Found", kPlainText);
    return;
  }
  std::optional<std::string> body;
  // The render function is the service's; an exception must not cross the loop, and a
  // scrape that fails is what the 500 answer exists for.
  try {
    body = render_();
  } catch (const std::exception& e) {
    LOG_ERROR("Error generating metrics: " << e.what());
  } catch (...) {
    LOG_ERROR("Error generating metrics: unknown exception");
  }
  if (!body) {
    ++counters_.internal_errors;
    respond(c, "HTTP/1.1 500 Internal Server Error", "Error generating metrics", kPlainText);
    return;
  }
  ++counters_.metrics_requests_served;
  respond(c, "HTTP/1.1 200 OK", *body, kMetricsText);
}

void MetricsHttpServer::respond(Conn& c, const char* status_line, const std::string& body,
                                const char* content_type) {
  c.out.clear();
  c.out.reserve(body.size() + 160);
  c.out += status_line;
  c.out += "\r\nContent-Type: ";
  c.out += content_type;
  c.out += "\r\nContent-Length: ";
  c.out += std::to_string(body.size());
  c.out += "\r\nConnection: close\r\n\r\n";
  c.out += body;
  c.out_off = 0;
  c.phase = Phase::kWriting;
  c.line.clear();
  c.line.shrink_to_fit();
  set_deadline(c, options_.write_timeout);
  flush(c);
}

void MetricsHttpServer::flush(Conn& c) {
  while (c.out_off < c.out.size()) {
    ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_off, c.out.size() - c.out_off,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.out_off += static_cast<std::size_t>(n);
      set_deadline(c, options_.write_timeout);  // progress: the client is reading
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      loop_.modify(c.fd.get(), kWritable);
      return;
    }
    LOG_DEBUG("metrics: client left before the response was sent on " << c.id);
    close_conn(c.id);
    return;
  }
  // Sent. Half-close so the client sees EOF now, then drain what it still sends.
  ::shutdown(c.fd.get(), SHUT_WR);
  c.phase = Phase::kLingering;
  std::string().swap(c.out);
  loop_.modify(c.fd.get(), kReadable);
  set_deadline(c, options_.linger_timeout);
}

void MetricsHttpServer::drain_lingering(Conn& c) {
  char buf[4096];
  // Bounded per event so a client streaming data cannot hog the loop; linger_timeout ends it.
  for (int i = 0; i < 16; ++i) {
    ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    close_conn(c.id);  // EOF or error: the peer is done with us
    return;
  }
}

nlohmann::json MetricsHttpServer::status() const {
  nlohmann::json http = nlohmann::json::object();
  if (ready_) {
    http = {
        {"connections_total", counters_.connections_total},
        {"metrics_requests_served", counters_.metrics_requests_served},
        {"bad_requests", counters_.bad_requests},
        {"internal_errors", counters_.internal_errors},
        {"not_found_responses", counters_.not_found_responses},
        {"client_disconnects", counters_.client_disconnects},
        {"request_timeouts", counters_.request_timeouts},
        {"is_running", running_},
        {"rejected_connections", counters_.rejected_connections},
    };
  }
  return {{"host", config_.host}, {"port", port()}, {"ready", ready_}, {"http_server", http}};
}

}  // namespace dispatcherd::metrics
