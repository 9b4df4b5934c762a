"""Dashboard tests in a headless browser (Debian's chromium and chromium-driver): what each page
shows, and that it fits every window width."""
