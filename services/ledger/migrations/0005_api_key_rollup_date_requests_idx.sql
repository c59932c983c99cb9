-- The reports' per-day signature, (rows, SUM(api_requests)) of the api-key rollup per date, is read
-- on every report call: with api_requests in the index it is an index-only scan (no heap pages).
-- Cost: an upsert that changes api_requests can no longer be a HOT update of this one table.
CREATE INDEX "LiteLLM_DailyApiKeySpend_date_api_requests_idx" ON "LiteLLM_DailyApiKeySpend" (date) INCLUDE (api_requests);
