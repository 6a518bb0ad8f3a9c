"""Tables of the job pool (schema version 2 of the database).

jobs        one row per job; JSON columns hold actions_log, graph_state and the account snapshot
            a replay job was enqueued with. Times are epoch seconds on the engine clock of the
            process that wrote them, except heartbeat_at and not_before (wall clock).
job_events  the timeline of each job (status changes, steps, tool calls, actions), replayable.
job_owners  one row per running pool: owner id, pid and heartbeat. The AUTOINCREMENT key is also
            the prefix of the job ids that pool hands out, so ids are unique across processes.
job_requests cancel/approve requests from other processes (the CLI) for the pool that owns the job.
"""

JOBS_MIGRATION: list[str] = [
    """CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        account TEXT NOT NULL,
        status TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        origin TEXT,
        owner TEXT,
        attempts INTEGER NOT NULL DEFAULT 1,
        requeues INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        heartbeat_at REAL,
        not_before REAL,
        duration_s REAL,
        progress REAL NOT NULL DEFAULT 0,
        step TEXT,
        model_used TEXT,
        user_instructions TEXT,
        iteration_count INTEGER NOT NULL DEFAULT 0,
        actions_taken INTEGER NOT NULL DEFAULT 0,
        actions_summary TEXT,
        actions_log TEXT NOT NULL DEFAULT '[]',
        initial_equity REAL,
        final_equity REAL,
        initial_balance REAL,
        final_balance REAL,
        error TEXT,
        graph_state TEXT NOT NULL DEFAULT '{}',
        snapshot TEXT,
        recover INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX jobs_status ON jobs(status, owner)",
    "CREATE INDEX jobs_account ON jobs(account, kind, status)",
    "CREATE INDEX jobs_finished ON jobs(finished_at)",
    """CREATE TABLE job_events (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        ts TEXT NOT NULL,
        type TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX job_events_job ON job_events(job_id, id)",
    """CREATE TABLE job_owners (
        block INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        host TEXT,
        pid INTEGER,
        started_at REAL,
        heartbeat_at REAL
    )""",
    """CREATE TABLE job_requests (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        action TEXT NOT NULL,
        created_at REAL NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,
        result TEXT
    )""",
    "CREATE INDEX job_requests_open ON job_requests(done)",
]
