#include "dispatcherd/brokers/socket_broker.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <exception>
#include <utility>

#include "dispatcherd/chunking.h"
#include "dispatcherd/log.h"

namespace dispatcherd {

namespace {

/// Connections accepted per loop turn; the rest wait in the kernel's backlog for the next
/// turn (epoll is level-triggered), so a connect storm cannot starve other sources.
constexpr int kAcceptsPerTurn = 64;
/// After running out of fds, accept() is paused this long instead of spinning on EMFILE.
constexpr double kAcceptPauseSeconds = 0.5;
/// Bytes per recv() call while reading up to the per-turn budget.
constexpr std::size_t kReadChunk = 16u << 10;

std::string errno_text(int err) {
  return std::strerror(err);
}

bool fill_address(const std::string& path, sockaddr_un& addr) {
  std::memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) return false;
  std::memcpy(addr.sun_path, path.data(), path.size());
  return true;
}

}  // namespace

SocketBroker::Limits SocketBroker::Limits::from(const ExtensionsConfig& ext) {
  Limits l;
  l.max_clients = ext.max_socket_clients;
  l.max_line_bytes = ext.max_socket_line_bytes;
  l.mode = ext.socket_mode;
  return l;
}

SocketBroker::SocketBroker(EventLoop& loop, const SocketConfig& config, Limits limits,
                           PayloadSink sink)
    : loop_(loop),
      config_(config),
      limits_(limits),
      sink_(std::move(sink)),
      created_at_(loop.now()) {}

SocketBroker::~SocketBroker() {
  stop();
}

Status SocketBroker::listen() {
  if (listener_) return Ok{};
  const std::string& path = config_.socket_path;
  sockaddr_un addr{};
  if (!fill_address(path, addr))
    return Error{"socket path '" + path + "' is empty or longer than " +
                 std::to_string(sizeof addr.sun_path - 1) + " bytes"};

  // A file already there is either a crashed run's leftover (nobody accepts: replace it) or a
  // live service (refuse: taking its path would silently steal its clients). Anything that
  // is not a socket is never deleted.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return Error{"socket path " + path + " exists and is not a socket; not replacing it"};
    Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!probe) return Error{"socket(): " + errno_text(errno)};
    int rc = ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    int err = errno;
    if (rc == 0 || err == EAGAIN || err == EINPROGRESS)
      return Error{"another service is already listening on " + path};
    if (err == ECONNREFUSED) {
      LOG_INFO("removing stale socket file " << path << " (no server answers on it)");
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        return Error{"cannot remove stale socket file " + path + ": " + errno_text(errno)};
    } else if (err != ENOENT) {
      return Error{"cannot probe existing socket " + path + ": " + errno_text(err)};
    }
  } else if (errno != ENOENT) {
    return Error{"cannot stat socket path " + path + ": " + errno_text(errno)};
  }

  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Error{"socket(): " + errno_text(errno)};
  // The file is created with the final mode (umask) so there is no moment where others may
  // connect; chmod covers a umask that was stricter than asked. Single-threaded main, so
  // changing the process umask for one call is safe.
  const mode_t mode = static_cast<mode_t>(limits_.mode & 0777);
  mode_t old_mask = ::umask(static_cast<mode_t>(~mode & 0777));
  int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  int bind_err = errno;
  ::umask(old_mask);
  if (rc != 0) return Error{"cannot bind " + path + ": " + errno_text(bind_err)};
  if (::chmod(path.c_str(), mode) != 0 || ::lstat(path.c_str(), &st) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return Error{"cannot set mode of " + path + ": " + errno_text(err)};
  }
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  have_inode_ = true;
  if (::listen(fd.get(), SOMAXCONN) != 0) {
    int err = errno;
    remove_file();
    return Error{"cannot listen on " + path + ": " + errno_text(err)};
  }
  listener_ = std::move(fd);
  error_.clear();
  loop_.watch(listener_.get(), kReadable, [this](std::uint32_t) { on_accept(); });
  LOG_INFO("listening on socket " << path);
  return Ok{};
}

void SocketBroker::start() {
  Status s = listen();
  if (!s) {
    error_ = s.error().message;
    LOG_ERROR("socket broker failed to start: " << error_);
  }
}

void SocketBroker::stop() {
  if (accept_pause_timer_) loop_.cancel(std::exchange(accept_pause_timer_, 0));
  std::size_t dropped = 0;
  for (auto& [id, c] : clients_) {
    dropped += c->out.size() - c->out_pos;
    loop_.unwatch(c->fd.get());
  }
  if (dropped) LOG_WARNING("socket broker stopping: " << dropped << " unsent reply bytes dropped");
  clients_.clear();
  if (listener_) {
    loop_.unwatch(listener_.get());
    listener_.reset();
  }
  remove_file();
}

void SocketBroker::remove_file() {
  if (!have_inode_) return;
  have_inode_ = false;
  // Only our own file: a later service may have replaced it after we were presumed dead.
  struct stat st {};
  if (::lstat(config_.socket_path.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
    ::unlink(config_.socket_path.c_str());
}

void SocketBroker::on_accept() {
  for (int i = 0; i < kAcceptsPerTurn && listener_; ++i) {
    int raw = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (raw < 0) {
      int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      // Out of fds or memory: the pending connection stays readable, so stop watching for a
      // moment rather than spin on the same error every turn.
      LOG_ERROR("socket accept failed: " << errno_text(err) << "; pausing accepts for "
                                         << kAcceptPauseSeconds << " s");
      loop_.unwatch(listener_.get());
      std::weak_ptr<int> alive = alive_;
      accept_pause_timer_ = loop_.after(kAcceptPauseSeconds, [this, alive] {
        if (alive.expired()) return;
        accept_pause_timer_ = 0;
        if (listener_)
          loop_.watch(listener_.get(), kReadable, [this](std::uint32_t) { on_accept(); });
      });
      return;
    }
    Fd fd(raw);
    if (clients_.size() >= limits_.max_clients) {
      ++rejected_clients_;
      LOG_WARNING("socket client refused: " << clients_.size() << " clients connected (limit "
                                            << limits_.max_clients << ")");
      continue;  // fd closes here
    }
    auto c = std::make_unique<Client>();
    c->id = next_client_id_++;
    c->fd = std::move(fd);
    c->events = kReadable;
    const std::uint64_t id = c->id;
    loop_.watch(c->fd.get(), c->events,
                [this, id](std::uint32_t events) { on_client_event(id, events); });
    clients_.emplace(id, std::move(c));
    LOG_DEBUG("socket client " << id << " connected");
  }
}

SocketBroker::Client* SocketBroker::find(std::uint64_t id) {
  auto it = clients_.find(id);
  return it == clients_.end() ? nullptr : it->second.get();
}

void SocketBroker::close_client(std::uint64_t id, std::string_view why) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  LOG_DEBUG("socket client " << id << " closed: " << why);
  loop_.unwatch(it->second->fd.get());
  clients_.erase(it);  // the Fd closes with it
}

void SocketBroker::on_client_event(std::uint64_t id, std::uint32_t events) {
  Client* c = find(id);
  if (!c) return;
  if ((events & kError) && !(events & kReadable)) {
    close_client(id, "socket error");
    return;
  }
  if ((events & (kWritable | kHangup)) && c->out_pos < c->out.size() && !flush(*c)) return;
  if ((events & (kReadable | kHangup)) && !c->eof && !c->backlog && !read_client(*c)) return;
  if (!process_lines(id)) return;
  c = find(id);
  if (!c) return;
  if (c->eof && !c->backlog && c->out_pos == c->out.size()) {
    close_client(id, "closed by peer");
    return;
  }
  update_events(*c);
}

bool SocketBroker::read_client(Client& c) {
  char buf[kReadChunk];
  std::size_t total = 0;
  while (total < limits_.read_bytes_per_turn) {
    std::size_t want = std::min(sizeof buf, limits_.read_bytes_per_turn - total);
    ssize_t n = ::recv(c.fd.get(), buf, want, 0);
    if (n > 0) {
      c.in.append(buf, static_cast<std::size_t>(n));
      total += static_cast<std::size_t>(n);
      if (static_cast<std::size_t>(n) < want) break;  // drained for now
      continue;
    }
    if (n == 0) {
      c.eof = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    close_client(c.id, errno_text(errno));
    return false;
  }
  return true;
}

bool SocketBroker::process_lines(std::uint64_t id) {
  Client* c = find(id);
  if (!c) return false;
  c->backlog = false;
  std::size_t pos = 0;  // consumed prefix of c->in, erased once at the end
  std::size_t handled = 0;
  for (;;) {
    std::size_t nl = c->in.find('\n', std::max(pos, c->scanned));
    std::size_t end = nl;
    std::size_t next = nl + 1;
    if (nl == std::string::npos) {
      c->scanned = c->in.size();
      std::size_t partial = c->in.size() - pos;
      if (partial > limits_.max_line_bytes) break;  // reported below, with the same rule
      // A last line without "\n" before the peer closed still counts (Python's readline()
      // returns it at EOF).
      if (!c->eof || partial == 0) break;
      end = next = c->in.size();
    }
    if (end - pos > limits_.max_line_bytes) break;
    if (handled >= limits_.lines_per_turn) {
      c->backlog = true;
      break;
    }
    ++handled;
    std::string line = c->in.substr(pos, end - pos);
    pos = next;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
    ++produced_count_;
    // The line is a copy: the sink may publish to (and so possibly close) this very client.
    try {
      sink_(std::to_string(id), line);
    } catch (const std::exception& e) {
      LOG_ERROR("socket client " << id << ": payload handler threw: " << e.what());
    } catch (...) {
      LOG_ERROR("socket client " << id << ": payload handler threw");
    }
    c = find(id);
    if (!c) return false;
  }
  std::size_t rest_nl = c->in.find('\n', pos);
  std::size_t longest = (rest_nl == std::string::npos ? c->in.size() : rest_nl) - pos;
  if (!c->backlog && longest > limits_.max_line_bytes) {
    ++oversized_lines_;
    LOG_WARNING("socket client " << id << " sent a line over " << limits_.max_line_bytes
                                 << " bytes; disconnecting it");
    close_client(id, "line too long");
    return false;
  }
  c->in.erase(0, pos);
  c->scanned = c->scanned > pos ? c->scanned - pos : 0;
  if (c->backlog) {
    // Lines are left but the socket may have nothing new to read (no EPOLLIN would come), so
    // continue on the next turn; reading from this client pauses until the backlog is gone.
    std::weak_ptr<int> alive = alive_;
    loop_.defer([this, alive, id] {
      if (!alive.expired()) on_client_event(id, 0);
    });
  }
  return true;
}

bool SocketBroker::flush(Client& c) {
  while (c.out_pos < c.out.size()) {
    ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_pos, c.out.size() - c.out_pos,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.out_pos += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    close_client(c.id, n < 0 ? errno_text(errno) : "write returned 0");
    return false;
  }
  if (c.out_pos == c.out.size()) {
    c.out.clear();
    c.out_pos = 0;
  } else if (c.out_pos > (1u << 20) && c.out_pos > c.out.size() / 2) {
    c.out.erase(0, c.out_pos);  // keep memory proportional to what is still unsent
    c.out_pos = 0;
  }
  return true;
}

void SocketBroker::update_events(Client& c) {
  std::uint32_t want = 0;
  if (!c.eof && !c.backlog) want |= kReadable;
  if (c.out_pos < c.out.size()) want |= kWritable;
  if (want == c.events) return;
  c.events = want;
  loop_.modify(c.fd.get(), want);
}

void SocketBroker::publish(std::string_view target, std::string_view payload) {
  std::uint64_t id = 0;
  auto [end, ec] = std::from_chars(target.data(), target.data() + target.size(), id);
  Client* c = (ec == std::errc() && end == target.data() + target.size()) ? find(id) : nullptr;
  if (!c) {
    ++dropped_replies_;
    LOG_DEBUG("socket reply to '" << target << "' dropped: no such client connected");
    return;
  }
  auto pieces = split_message(payload, kSocketMaxBytes);
  if (!pieces) {
    ++dropped_replies_;
    LOG_ERROR("socket reply to client " << id << " dropped: " << pieces.error().message);
    return;
  }
  std::size_t bytes = 0;
  for (const auto& p : *pieces) bytes += p.size() + 1;
  if (c->out.size() - c->out_pos + bytes > limits_.max_output_bytes) {
    ++slow_client_disconnects_;
    ++dropped_replies_;
    LOG_WARNING("socket client " << id << " is not reading its replies ("
                                 << c->out.size() - c->out_pos << " bytes unsent, limit "
                                 << limits_.max_output_bytes << "); disconnecting it");
    close_client(id, "output buffer full");
    return;
  }
  c->out.reserve(c->out.size() + bytes);
  for (const auto& p : *pieces) {
    c->out += p;
    c->out += '\n';
  }
  if (!flush(*c)) return;
  update_events(*c);
}

nlohmann::json SocketBroker::status() const {
  nlohmann::json s = {{"produced_count", produced_count_},
                      {"recycle_count", 0},
                      {"uptime_seconds", loop_.now() - created_at_},
                      {"clients", clients_.size()},
                      {"clients_total", next_client_id_},
                      {"rejected_clients", rejected_clients_},
                      {"oversized_lines", oversized_lines_},
                      {"slow_client_disconnects", slow_client_disconnects_},
                      {"dropped_replies", dropped_replies_}};
  if (!error_.empty()) s["error"] = error_;
  return s;
}

}  // namespace dispatcherd
