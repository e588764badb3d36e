#include "actors/driver_shm.hpp"

#include <unistd.h>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "runtime/defaults.hpp"
#include "runtime/error.hpp"
#include "transport/shm_messages.hpp"

namespace cafex {

std::string shm_prefix_for(uint64_t generation) {
  static std::atomic<uint64_t> instance{0};
  return "/cafex-" + std::to_string(getpid()) + "-" + std::to_string(instance++) + "-g"
         + std::to_string(generation) + "-";
}

caf::expected<std::unique_ptr<driver_shm_path>>
driver_shm_path::create(const std::string& prefix, int tp, int pp, step_sink_actor sink,
                        sizes sz) {
  std::unique_ptr<driver_shm_path> p{new driver_shm_path};
  p->prefix_ = prefix;
  p->sink_ = std::move(sink);
  auto world = tp * pp;
  for (int r = 0; r < tp; ++r) {
    auto ring = shm_ring::create(prefix + "cmd" + std::to_string(r), sz.command_ring);
    if (!ring)
      return ring.error();
    p->commands_.push_back(std::move(*ring));
  }
  for (int r = 0; r + tp < world; ++r) {
    auto ring = shm_ring::create(prefix + "link" + std::to_string(r), sz.link_ring);
    if (!ring)
      return ring.error();
    p->links_.push_back(std::move(*ring));
  }
  for (int r = 0; r < world; ++r) {
    auto ring = shm_ring::create(prefix + "res" + std::to_string(r), sz.report_ring);
    if (!ring)
      return ring.error();
    p->reports_.push_back(std::move(*ring));
  }
  auto bell = shm_doorbell::create(prefix + "bell");
  if (!bell)
    return bell.error();
  p->bell_ = std::move(*bell);
  p->reader_ = std::thread([raw = p.get()] { raw->read_loop(); });
  return p;
}

driver_shm_path::~driver_shm_path() {
  stop_ = true;
  for (auto* group : {&commands_, &links_, &reports_})
    for (auto& r : *group)
      r->close(); // wakes the workers' hot loops
  if (bell_)
    bell_->ring();
  if (reader_.joinable())
    reader_.join();
}

void driver_shm_path::unlink_names() {
  for (auto* group : {&commands_, &links_, &reports_})
    for (auto& r : *group)
      r->unlink();
  if (bell_)
    bell_->unlink();
}

caf::error driver_shm_path::dispatch(uint64_t seq, const scheduler_output& step) {
  auto bytes = encode_scheduler_output(step);
  for (auto& ring : commands_)
    if (auto err = write_command(*ring, seq, bytes, defaults::shm_command_timeout))
      return err;
  return caf::none;
}

void driver_shm_path::read_loop() {
  std::vector<char> buf;
  while (!stop_) {
    auto seen = bell_->value();
    bool any = false;
    for (size_t r = 0; r < reports_.size(); ++r) {
      while (reports_[r]->try_read(buf)) {
        any = true;
        auto m = read_report(buf);
        if (!m) {
          spdlog::error("malformed report from rank {}: {}", r, describe(m.error()));
          continue;
        }
        switch (m->kind) {
          case report_kind::result:
            caf::anon_send(sink_, result_atom::value, m->seq, m->rank, std::move(m->output));
            break;
          case report_kind::progress:
            caf::anon_send(sink_, progress_atom::value, m->seq, m->rank);
            break;
          case report_kind::failure:
            caf::anon_send(sink_, stepfail_atom::value, m->seq, m->rank, std::move(m->error));
            break;
        }
      }
    }
    if (!any)
      bell_->wait(seen, defaults::shm_driver_wake);
  }
}

} // namespace cafex
