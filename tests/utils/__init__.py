"""Shared by every test package: data and config factories (`data`, `configs`), test doubles
(`fakes`: fake trainers, `RecordingQueue`), helpers for runs, services and servers (`runs`,
`services`, `server`) and real processes on free ports (`processes`)."""
