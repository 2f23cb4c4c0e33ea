-- The timers look for the cases whose cooling-off has ended on every tick (`Projection::due_cases`): by status and
-- end, so that a tick reads the cases that are due, not every case cooling off (issue 21).
CREATE INDEX cases_cooling_off_ends ON cases (status, cooling_off_ends_at);
