"""The durable background job pool and the Smart Risk Manager.

schema (tables), model (the job and its records), store (group commit), pool (JobPool), ops
(recovery, cancel, retry, approve in the database), kinds (kind registry), context (what a handler
gets), graph (the SRM state graph), tools, guardrails, risk, actions, planners (heuristic,
openai), cli (`riskterm jobs ...`), bench. Keep this file free of imports: riskterm.db imports
riskterm.jobs.schema while opening the database.
"""
