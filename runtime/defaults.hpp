// Every default duration of cafex in one place (as Ray's ray_config_def.h and CAF's
// defaults.hpp): what each one bounds and why it has that value. Option structs take
// their in-class defaults from here; call sites name the constant instead of a literal.
// Only <chrono>: this header is public (the option structs a host fills include it).
#pragma once

#include <chrono>

namespace cafex::defaults {

using std::chrono::milliseconds;

// Executor facade (cafex/executor.hpp) --------------------------------------------------

/// The whole start-up (placement, spawning, ranks, init_worker, init_device, load_model).
/// Generous: a CUDA worker's first device and model load take seconds.
inline constexpr milliseconds start_timeout{60000};
/// One collective_rpc when the caller names no timeout (vLLM has none; a bound is ours).
inline constexpr milliseconds rpc_timeout{60000};
/// One execute_model: the seed's 300 s get-timeout on the compiled DAG.
inline constexpr milliseconds step_timeout{300000};
/// Added to a request's own deadline when the facade asks the driver, which enforces that
/// deadline per worker itself: the slack only guards against a stuck driver.
inline constexpr milliseconds driver_slack{5000};
/// Asking the driver to stop at shutdown (it fails what is pending and answers at once).
inline constexpr milliseconds driver_stop_timeout{5000};
/// teardown_dataflow: the driver waits up to worker_teardown_timeout for each stage, in
/// parallel, so this leaves it room to answer.
inline constexpr milliseconds teardown_timeout{15000};
/// dataflow_stats and check_health: answered by the driver from its own state.
inline constexpr milliseconds driver_query_timeout{10000};

// Liveness (actors/liveness_options.hpp): the same in every process of a cluster -------

/// Middleman heartbeat on every link (CAF's own default, 0, never notices a stopped peer).
/// 200 ms costs nothing measurable and lets connection_timeout be short.
inline constexpr milliseconds heartbeat_interval{200};
/// A link silent this long is closed: a stopped or partitioned worker is reported
/// unresponsive after about this long. Ten heartbeats, so one late packet is no loss.
inline constexpr milliseconds connection_timeout{2000};
/// After a worker's link drops, how long the driver waits for its node agent to say how
/// the process ended (exit code, signal) before failing its calls as "unreachable". A
/// killed worker is reaped within one reap interval, far below this.
inline constexpr milliseconds cause_timeout{500};

// Cluster: node agents, placement, spawning (actors/cluster/) ----------------------------

/// Connecting to one node agent and each request to it (probe, handshake, version, info).
inline constexpr milliseconds connect_timeout{10000};
/// Waiting for free resources before placement fails (resources free up when other
/// drivers finish).
inline constexpr milliseconds placement_timeout{60000};
/// A worker process must register with its node agent within this long (spawn_request).
inline constexpr milliseconds worker_register_timeout{30000};
/// The dummy driver's request to a node agent (reserve, kill, release).
inline constexpr milliseconds agent_timeout{10000};
/// Asking the embedded node agent to describe itself (same process: answers at once).
inline constexpr milliseconds local_agent_timeout{10000};
/// Shutdown: the dummy driver waits until every worker process is reaped; each agent
/// kills with its kill grace (2 s) first, so this leaves room for several agents.
inline constexpr milliseconds kill_workers_timeout{15000};
/// Releasing every reservation at shutdown.
inline constexpr milliseconds release_timeout{5000};
/// Added to a spawn's own deadline: the agent answers only once the worker registered.
inline constexpr milliseconds spawn_slack{2000};
/// First pause between polls of the agents while placement waits; doubles each time.
inline constexpr milliseconds placement_first_backoff{100};
/// Longest pause between polls of the agents while placement waits.
inline constexpr milliseconds placement_max_backoff{2000};
/// The first "waiting for N more bundles" line: placement that succeeds at once is quiet.
inline constexpr milliseconds placement_first_report{1000};
/// Between later "waiting for N more bundles" lines.
inline constexpr milliseconds placement_report_interval{5000};
/// Restart policy: is the lost rank's node agent still there? A live agent answers in
/// milliseconds; a cut link would otherwise hold the respawn until connect_timeout.
inline constexpr milliseconds respawn_probe{2000};
/// The same probe when the driver already saw that agent unreachable.
inline constexpr milliseconds respawn_probe_suspect{200};

// Recovery (cafex/executor_recovery.cpp) -------------------------------------------------

/// Beyond cause_timeout: how long recovery waits for the driver to learn how each lost
/// link ended (or for a second loss report) before it acts on what it knows.
inline constexpr milliseconds recovery_settle{1000};
/// Recovery polls the driver's health view this often while links are still probed.
inline constexpr milliseconds recovery_poll{5};
/// Telling the driver that a recovery ended (its own state: answers at once).
inline constexpr milliseconds recovered_timeout{10000};

// Dataflow (actors/driver_dataflow.cpp, driver_shm.cpp, worker_hot_loop.cpp) -------------

/// A stage's channel set-up and transfer deadline when the driver names none.
inline constexpr milliseconds channel_timeout{30000};
/// Added to channel_timeout while compiling: the workers enforce that one themselves.
inline constexpr milliseconds compile_slack{5000};
/// Each worker's teardown of its stage (closing channels and rings).
inline constexpr milliseconds worker_teardown_timeout{10000};
/// Writing one step's command into a worker's shared-memory ring: a ring stays full only
/// when its worker stopped reading, which is a lost worker, not back-pressure.
inline constexpr milliseconds shm_command_timeout{1000};
/// The driver's report reader and a worker's hot loop wake at least this often to notice
/// a stop request without anyone closing a ring.
inline constexpr milliseconds shm_driver_wake{200};
inline constexpr milliseconds shm_worker_wake{100};
/// How long a same-node worker spins on its input ring after a step before it sleeps
/// (executor_options::hot_spin): the next step of a busy server arrives well within it,
/// and an idle worker sleeps 20 ms after its last step. The spin halves after each step
/// that came later than it (transport/spin_governor.hpp).
inline constexpr std::chrono::microseconds hot_spin{20000};

// Rendezvous (transport/gloo_collective.cpp) ---------------------------------------------

/// While a rank connects its Gloo pairs, its watch wakes at least this often to see
/// whether the rank is done (it normally learns that at once, from the rank's own
/// "connected" key; this bounds the wait only when that key cannot be set).
inline constexpr milliseconds rendezvous_watch_interval{500};

// Workers (actors/worker_*) --------------------------------------------------------------

/// init_worker's rendezvous and channel deadline when the driver names none.
inline constexpr milliseconds worker_init_timeout{60000};

// Driver and node agent (actors/driver_*.cpp, actors/node_agent_actor.cpp) ---------------

/// Added to the cause timeout for a kill through the node agent: the agent waits up to its
/// kill grace for the process to be reaped before it answers.
inline constexpr milliseconds kill_answer_margin{5000};
/// How often a node agent polls its children for exit (cheap waitpid calls).
inline constexpr milliseconds reap_interval{50};
/// The poll while a cause question waits: a killed worker's link drops a few ms before
/// its process can be reaped, and the driver's callers wait on the answer.
inline constexpr milliseconds cause_poll_interval{5};
/// SIGTERM to SIGKILL when a node agent stops a worker.
inline constexpr milliseconds kill_grace{2000};
/// How long a cause question waits for a lost worker's process to be reaped before the
/// agent answers with the state of a process that still lives.
inline constexpr milliseconds cause_wait{200};

} // namespace cafex::defaults
