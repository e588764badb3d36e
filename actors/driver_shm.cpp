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

caf::expected<std::shared_ptr<driver_shm_path>>
driver_shm_path::create(const std::string& prefix, int tp, int pp, step_sink_actor sink,
                        sizes sz, std::chrono::milliseconds step_timeout,
                        std::shared_ptr<direct_lane::counters> lane_counts) {
  std::shared_ptr<driver_shm_path> p{new driver_shm_path};
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
  for (int r = 0; r < world; ++r) {
    auto call = shm_ring::create(prefix + "call" + std::to_string(r), sz.call_ring);
    if (!call)
      return call.error();
    p->calls_.push_back(std::move(*call));
    auto reply = shm_ring::create(prefix + "reply" + std::to_string(r), sz.call_ring);
    if (!reply)
      return reply.error();
    p->replies_.push_back(std::move(*reply));
  }
  auto bell = shm_doorbell::create(prefix + "bell");
  if (!bell)
    return bell.error();
  p->bell_ = std::move(*bell);
  auto lane_bell = shm_doorbell::create(prefix + "dbell");
  if (!lane_bell)
    return lane_bell.error();
  p->lane_bell_ = std::move(*lane_bell);
  auto board = shm_board::create(prefix + "board", static_cast<size_t>(world));
  if (!board)
    return board.error();
  p->board_ = std::move(*board);
  p->output_rank_ = (pp - 1) * tp;
  direct_lane::rings lr;
  for (auto& c : p->commands_)
    lr.commands.push_back(c.get());
  for (int r = 0; r < world; ++r) {
    lr.calls.push_back(p->calls_[static_cast<size_t>(r)].get());
    lr.replies.push_back(p->replies_[static_cast<size_t>(r)].get());
  }
  lr.output = p->reports_[static_cast<size_t>(p->output_rank_)].get();
  lr.bell = p->lane_bell_.get();
  lr.board = p->board_.get();
  lr.tp = tp;
  lr.pp = pp;
  p->lane_ = std::make_unique<direct_lane>(std::move(lr), step_timeout, p->sink_,
                                           std::move(lane_counts));
  p->reader_ = std::thread([raw = p.get()] { raw->read_loop(); });
  return p;
}

void driver_shm_path::close(const caf::error& why) {
  if (lane_)
    lane_->close(why);
  stop_ = true;
  for (auto* group : {&commands_, &links_, &reports_, &calls_, &replies_})
    for (auto& r : *group)
      r->close(); // wakes the workers' hot loops
  if (bell_)
    bell_->ring();
  if (reader_.joinable())
    reader_.join();
}

driver_shm_path::~driver_shm_path() {
  close(make_error(errc::not_ready, "the dataflow's shared-memory path was closed"));
}

void driver_shm_path::unlink_names() {
  for (auto* group : {&commands_, &links_, &reports_, &calls_, &replies_})
    for (auto& r : *group)
      r->unlink();
  for (auto* bell : {bell_.get(), lane_bell_.get()})
    if (bell)
      bell->unlink();
  if (board_)
    board_->unlink();
}

caf::error driver_shm_path::dispatch(uint64_t seq, const scheduler_output& step) {
  auto bytes = encode_scheduler_output(step);
  for (auto& ring : commands_)
    if (auto err = write_command(*ring, seq, bytes, defaults::shm_command_timeout))
      return err;
  return caf::none;
}

void driver_shm_path::read_loop() {
  std::vector<std::vector<char>> msgs;
  std::vector<char> buf;
  while (!stop_) {
    auto seen = bell_->value();
    msgs.clear();
    for (size_t r = 0; r < reports_.size(); ++r) {
      if (static_cast<int>(r) == output_rank_) {
        lane_->drain_output(msgs); // unless a direct step owns that ring
        continue;
      }
      while (reports_[r]->try_read(buf))
        msgs.push_back(buf);
    }
    for (auto& bytes : msgs) {
      auto m = read_report(bytes);
      if (!m) {
        spdlog::error("malformed report on the shared-memory path: {}", describe(m.error()));
        continue;
      }
      if (is_direct_seq(m->seq)) {
        // A rank short of the output failed a caller's step: fail it there, and tell the
        // driver if it is the step's first failure (a broken transport starts one
        // recovery). Else a late direct answer, or another rank's failure of that step.
        if (m->kind == report_kind::failure && lane_->fail(m->seq, m->error))
          forward_report(sink_, *m);
        continue;
      }
      forward_report(sink_, *m);
    }
    if (msgs.empty())
      bell_->wait(seen, defaults::shm_driver_wake);
  }
}

} // namespace cafex
