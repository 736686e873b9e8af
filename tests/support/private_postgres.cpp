#include "private_postgres.h"

#include <libpq-fe.h>
#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "pg_test_env.h"

namespace dispatcherd::testing {

namespace {
std::string script() {
  return test_path("DISPATCHERD_SOURCE_DIR") + "/tests/support/pg_ctl.sh";
}
}  // namespace

PrivatePostgres::PrivatePostgres() {
  char tmpl[] = "/tmp/dpgprivate.XXXXXX";
  if (!::mkdtemp(tmpl)) return;
  state_dir_ = tmpl;
  if (!run("start")) return;
  std::ifstream in(state_dir_ + "/env");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("DSN=", 0) != 0) continue;
    std::string v = line.substr(4);
    if (v.size() >= 2 && v.front() == '"') v = v.substr(1, v.size() - 2);
    dsn_ = v;
  }
}

PrivatePostgres::~PrivatePostgres() {
  if (state_dir_.empty()) return;
  run("stop");
  std::string cmd = "rm -rf '" + state_dir_ + "'";
  [[maybe_unused]] int rc = std::system(cmd.c_str());
}

bool PrivatePostgres::run(const std::string& what) const {
  std::string cmd = "'" + script() + "' " + what + " '" + state_dir_ + "' >/dev/null";
  return std::system(cmd.c_str()) == 0;
}

bool PrivatePostgres::down() {
  return run("down");
}
bool PrivatePostgres::up() {
  return run("up");
}

bool PrivatePostgres::notify_many(const std::string& channel,
                                  const std::vector<std::string>& payloads,
                                  std::size_t per_statement) const {
  std::unique_ptr<PGconn, decltype(&PQfinish)> c(PQconnectdb(dsn_.c_str()), &PQfinish);
  if (PQstatus(c.get()) != CONNECTION_OK) return false;
  for (std::size_t i = 0; i < payloads.size(); i += per_statement) {
    nlohmann::json arr = nlohmann::json::array();
    for (std::size_t j = i; j < std::min(payloads.size(), i + per_statement); ++j)
      arr.push_back(payloads[j]);
    std::string a = arr.dump();
    const char* params[2] = {channel.c_str(), a.c_str()};
    std::unique_ptr<PGresult, decltype(&PQclear)> r(
        PQexecParams(c.get(), "SELECT pg_notify($1, x) FROM json_array_elements_text($2::json) x",
                     2, nullptr, params, nullptr, nullptr, 0),
        &PQclear);
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) return false;
  }
  return true;
}

}  // namespace dispatcherd::testing
