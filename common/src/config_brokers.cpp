// The brokers: section (upstream-spec §3.1.1 pg_notify, §3.2 socket). The pg_notify
// `config` mapping is turned into one libpq conninfo string the way psycopg does it, and
// checked with libpq (resolve_conninfo) so a typo fails at start-up rather than at connect:
// at load, or, for the service, when it starts the broker (ConninfoCheck::Deferred).

#include <sys/un.h>

#include <filesystem>
#include <sstream>
#include <system_error>

#include "config_yaml.h"
#include "dispatcherd/channel_name.h"
#include "dispatcherd/libpq_api.h"

namespace dispatcherd::config_detail {
namespace {

std::string num(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

void check_channel(const Ctx& c, const YAML::Node& node, const std::string& path,
                   const std::string& name) {
  Status s = validate_channel_name(name);
  if (s.ok()) return;
  std::string msg =
      "invalid channel name '" + excerpt(name) + "' in " + path + ": " + s.error().message;
  if (name.size() > kMaxChannelNameBytes)
    msg += " (at most " + std::to_string(kMaxChannelNameBytes) + " bytes)";
  c.fail(node.Mark(), msg);
}

// psycopg's _param_escape: backslash-escape \ and ', quote when there is whitespace.
std::string conninfo_value(const std::string& v) {
  if (v.empty()) return "''";
  std::string out;
  bool space = false;
  for (char ch : v) {
    if (ch == '\\' || ch == '\'') out.push_back('\\');
    space =
        space || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
    out.push_back(ch);
  }
  return space ? "'" + out + "'" : out;
}

// Parses a conninfo string or URI with libpq (no defaults applied) into key/value pairs.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_conninfo(
    const LibPq& pq, const std::string& text, std::string& error) {
  char* err = nullptr;
  PQconninfoOption* opts = pq.PQconninfoParse(text.c_str(), &err);
  if (!opts) {
    error = err ? err : "out of memory";
    if (err) pq.PQfreemem(err);
    while (!error.empty() && (error.back() == '\n' || error.back() == ' ')) error.pop_back();
    return std::nullopt;
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (PQconninfoOption* o = opts; o->keyword; ++o)
    if (o->val) out.emplace_back(o->keyword, o->val);
  pq.PQconninfoFree(opts);
  return out;
}

bool libpq_keyword(const LibPq& pq, const std::string& key) {
  char* err = nullptr;
  PQconninfoOption* opts = pq.PQconninfoParse("", &err);
  if (err) pq.PQfreemem(err);
  bool found = false;
  for (PQconninfoOption* o = opts; o && o->keyword; ++o) found = found || key == o->keyword;
  if (opts) pq.PQconninfoFree(opts);
  return found;
}

// Keeps brokers.pg_notify.config's entries with their positions; the checks that need libpq
// run in resolve_conninfo(): at the end of the load, or (ConninfoCheck::Deferred) when the
// service starts the broker.
void collect_conninfo(const Ctx& c, const Field& config, ConninfoSource& src) {
  src.path = config.path;
  src.at = c.where(config.value.Mark());
  for (const Field& f : c.any_fields(config.value, config.path)) {
    std::string value;
    if (f.key == "conninfo") {
      value = c.get_string(f);
    } else if (f.key == "autocommit") {
      (void)c.get_bool(f);  // connections are always in autocommit mode anyway (§3.1.1)
      continue;
    } else if (kind_of(f.value) == Kind::Null) {
      continue;  // psycopg drops None-valued kwargs
    } else {
      value = c.get_scalar_text(f);
    }
    src.entries.push_back(
        {f.key, f.path, std::move(value), c.where(f.key_node.Mark()), c.where(f.value.Mark())});
  }
}

void load_pg_notify(const Ctx& c, const Field& section, PgNotifyConfig& pg) {
  pg.enabled = true;
  std::optional<Field> config, async_factory, idle_f, age_f;
  for (const Field& f :
       c.fields(section.value, section.path,
                {"config", "async_connection_factory", "sync_connection_factory", "channels",
                 "default_publish_channel", "max_connection_idle_seconds",
                 "max_self_check_message_age_seconds"})) {
    if (f.key == "config") {
      if (kind_of(f.value) != Kind::Null && kind_of(f.value) != Kind::Map)
        c.fail(f, f.path + " must be a mapping, got " + describe(f.value));
      if (f.value.size() > 0) config = f;  // an empty mapping is falsy to upstream: not given
    } else if (f.key == "async_connection_factory" || f.key == "sync_connection_factory") {
      if (c.get_opt_string(f) && f.key[0] == 'a') async_factory = f;
      c.warn(f.key_node.Mark(), f.path +
                                    " is a Python import path; the C++ service connects "
                                    "with config and ignores it");
    } else if (f.key == "channels") {
      pg.channels = c.get_string_list(f);
      for (std::size_t i = 0; i < pg.channels.size(); ++i)
        check_channel(c, f.value[i], f.path, pg.channels[i]);
    } else if (f.key == "default_publish_channel") {
      pg.default_publish_channel = c.get_opt_string(f);
      if (pg.default_publish_channel)
        check_channel(c, f.value, f.path, *pg.default_publish_channel);
    } else if (f.key == "max_connection_idle_seconds") {
      pg.max_connection_idle_seconds = c.get_opt_number(f, 0, true);
      idle_f = f;
    } else {
      pg.max_self_check_message_age_seconds = c.get_opt_number(f, 0);
      age_f = f;
    }
  }
  if (!config) {
    std::string msg = section.path + ": Must specify either config or async_connection_factory";
    if (async_factory)
      msg +=
          " (async_connection_factory is a Python hook the C++ service cannot call, so "
          "config is required)";
    c.fail(section.key_node.Mark(), msg);
  }
  // libpq's checks come last (load_config_text or the service), after every other check.
  collect_conninfo(c, *config, pg.conninfo_source);
  pg.conninfo_source.pending = true;
  // The self-check rules of §3.1.1, with upstream's wording.
  if (!pg.max_connection_idle_seconds) {
    pg.max_self_check_message_age_seconds.reset();
  } else if (!pg.max_self_check_message_age_seconds) {
    c.fail(*age_f,
           "max_self_check_message_age_seconds must be specified if health checks are "
           "enabled (max_connection_idle_seconds is not null)");
  } else if (*pg.max_self_check_message_age_seconds > *pg.max_connection_idle_seconds) {
    const Field& at = age_f ? *age_f : *idle_f;
    c.fail(at,
           "max_self_check_message_age_seconds must be smaller than "
           "max_connection_idle_seconds (" +
               num(*pg.max_self_check_message_age_seconds) + " > " +
               num(*pg.max_connection_idle_seconds) + ")");
  }
}

void load_socket(const Ctx& c, const Field& section, SocketConfig& s) {
  s.enabled = true;
  std::optional<Field> path_f;
  for (const Field& f : c.fields(section.value, section.path, {"socket_path"})) path_f = f;
  if (!path_f) c.fail(section, section.path + ": missing required key 'socket_path'");
  std::string path = c.get_string(*path_f);
  if (path.empty()) c.fail(*path_f, path_f->path + " must not be empty");
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(path, ec);
  if (ec) c.fail(*path_f, path_f->path + ": cannot make it absolute: " + ec.message());
  s.socket_path = abs.string();
  // sockaddr_un::sun_path holds the path and its NUL; a longer one cannot be bound.
  if (s.socket_path.size() >= sizeof(sockaddr_un::sun_path))
    c.fail(*path_f, path_f->path + " is too long for a Unix socket (" +
                        std::to_string(s.socket_path.size()) + " bytes once absolute, at most " +
                        std::to_string(sizeof(sockaddr_un::sun_path) - 1) + ")");
}

}  // namespace

void load_brokers(const Ctx& c, const Field& section, Config& cfg) {
  for (const Field& f : c.any_fields(section.value, "brokers")) {
    if (kind_of(f.value) != Kind::Map)
      c.fail(f, f.path + " must be a mapping, got " + describe(f.value));
    if (f.key == "pg_notify")
      load_pg_notify(c, f, cfg.pg_notify);
    else if (f.key == "socket")
      load_socket(c, f, cfg.socket);
    else
      c.fail(f.key_node.Mark(),
             "unknown broker '" + excerpt(f.key) + "' in brokers (known: pg_notify, socket)");
    cfg.broker_order.push_back(f.key);
  }
}

}  // namespace dispatcherd::config_detail

namespace dispatcherd {

// Like psycopg's make_conninfo(conninfo, **kwargs): the conninfo's parameters, then the
// other keys of `config` (overriding), as one key=value string.
Status resolve_conninfo(PgNotifyConfig& pg) {
  using config_detail::conninfo_value;
  using config_detail::excerpt;
  ConninfoSource& src = pg.conninfo_source;
  // libpq is loaded with dlopen (dispatcherd/libpq_api.h); only a pg_notify config needs it.
  auto loaded = libpq();
  if (!loaded.ok()) return Error{src.at + src.path + ": " + loaded.error().message};
  const LibPq& pq = **loaded;
  std::vector<std::pair<std::string, std::string>> params;
  std::optional<std::string> passthrough;
  bool extra = false;
  auto set = [&params](const std::string& k, const std::string& v) {
    for (auto& p : params)
      if (p.first == k) return void(p.second = v);
    params.emplace_back(k, v);
  };
  for (const ConninfoSource::Entry& e : src.entries) {
    if (e.key == "conninfo") {
      std::string error;
      auto parsed = config_detail::parse_conninfo(pq, e.value, error);
      if (!parsed) return Error{e.value_at + "invalid " + e.path + ": " + error};
      if (!parsed->empty()) passthrough = e.value;
      for (auto& [k, v] : *parsed) set(k, v);
    } else {
      if (!config_detail::libpq_keyword(pq, e.key))
        return Error{e.key_at + "unknown libpq connection parameter '" + excerpt(e.key) + "' in " +
                     src.path};
      set(e.key, e.value);
      extra = true;
    }
  }
  std::string out;
  // As psycopg: without extra keys the conninfo is used verbatim (only checked above).
  if (passthrough && !extra) {
    out = *passthrough;
  } else {
    for (const auto& [k, v] : params) out += (out.empty() ? "" : " ") + k + "=" + conninfo_value(v);
  }
  if (out.empty())
    return Error{src.at + src.path + " gives no connection parameters (set conninfo)"};
  if (pg.conninfo.empty()) pg.conninfo = std::move(out);  // else DISPATCHERD_PG_CONNINFO set it
  src.pending = false;
  return Ok{};
}

}  // namespace dispatcherd
