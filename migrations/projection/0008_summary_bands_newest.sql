-- The phrasing check reads, for each band of a new summary, only the newest summaries of the day sharing it (issue 21,
-- `PHRASING_BAND_RECENT_MAX`): by band and time, so that a band shared by every case of the day (one template, or a
-- campaign of copies) costs a bounded read, not a scan of the day.
CREATE INDEX summary_bands_by_key_and_time ON summary_bands (band_key, at);
