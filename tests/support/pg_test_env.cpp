#include "pg_test_env.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>

namespace dispatcherd::testing {

std::string test_path(const std::string& key) {
  if (const char* file = std::getenv("DISPATCHERD_TEST_PATHS")) {
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line))
      if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  }
  const char* v = std::getenv(key.c_str());
  return v ? v : "";
}

std::string pg_dsn() {
  static const std::string dsn = [] {
    std::string path = test_path("DISPATCHERD_TEST_PG_ENV");
    if (path.empty()) return std::string();
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("DSN=", 0) == 0) {
        std::string v = line.substr(4);
        if (v.size() >= 2 && v.front() == '"') v = v.substr(1, v.size() - 2);
        return v;
      }
    }
    return std::string();
  }();
  return dsn;
}

std::string pg_exec(const std::string& sql) {
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(pg_dsn().c_str()), &PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    ADD_FAILURE() << "connect failed: " << PQerrorMessage(conn.get());
    return {};
  }
  std::unique_ptr<PGresult, decltype(&PQclear)> res(PQexec(conn.get(), sql.c_str()), &PQclear);
  auto st = PQresultStatus(res.get());
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    ADD_FAILURE() << "SQL failed: " << sql << ": " << PQerrorMessage(conn.get());
    return {};
  }
  if (st == PGRES_TUPLES_OK && PQntuples(res.get()) > 0 && PQnfields(res.get()) > 0)
    return PQgetvalue(res.get(), 0, 0);
  return {};
}

std::string unique_channel(const std::string& suffix) {
  static std::atomic<int> n{0};
  return "t_" + std::to_string(::getpid()) + "_" + std::to_string(n++) + "_" + suffix;
}

}  // namespace dispatcherd::testing
