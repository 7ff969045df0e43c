import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { describe, it } from 'node:test'
import {
  CpuLedger,
  type CpuPerRequest,
  type CpuReading,
  parseMachineBusy,
  parseProcStat,
  ratioCeiling,
  readCpu,
  spentBetween,
} from '../bench/cpu'

/** The bench's CPU accounting (issue 16): what it reads from /proc and the arithmetic on it. */
describe('bench CPU accounting', () => {
  it('reads utime + stime after a process name that holds spaces and parentheses', () => {
    // Fields after comm: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime …
    const line = '4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 5 0 0 20 0 1 0'
    assert.deepEqual(parseProcStat(line), { comm: 'my (odd) proc', cpuMs: 420 })
    assert.equal(parseProcStat('garbage'), undefined)
    assert.equal(parseProcStat('1 (x) S 1'), undefined)
  })

  it('counts the machine busy without idle and iowait', () => {
    // user nice system idle iowait irq softirq steal
    const stat = 'cpu  100 1 50 9000 40 2 3 4 0 0\ncpu0 50 0 25 4500 20 1 1 2 0 0\n'
    assert.equal(parseMachineBusy(stat), (100 + 1 + 50 + 2 + 3 + 4) * 10)
    assert.equal(parseMachineBusy('intr 1 2 3'), undefined)
  })

  it('counts a process that started meanwhile in full and one that exited as nothing', () => {
    const before: CpuReading = {
      processes: new Map([
        [10, { group: 'runtime', cpuMs: 1_000 }],
        [20, { group: 'postgres', cpuMs: 5_000 }], // exits before the second reading
      ]),
      busyMs: 100_000,
      atMs: 0,
    }
    const after: CpuReading = {
      processes: new Map([
        [10, { group: 'runtime', cpuMs: 1_300 }],
        [30, { group: 'postgres', cpuMs: 200 }], // a backend the pool opened meanwhile
      ]),
      busyMs: 100_600,
      atMs: 1_000,
    }
    assert.deepEqual(spentBetween(before, after), {
      runtime: 300,
      postgres: 200,
      gateway: 0,
      load: 0,
      other: 100,
    })
  })

  it('answers per request and how busy the cores were', () => {
    const ledger = new CpuLedger()
    assert.equal(ledger.perRequest(2), undefined)
    const at = (ms: number, runtime: number, busy: number): CpuReading => ({
      processes: new Map([[1, { group: 'runtime', cpuMs: runtime }]]),
      busyMs: busy,
      atMs: ms,
    })
    ledger.add(at(0, 0, 0), at(1_000, 800, 1_600), 400)
    const cpu = ledger.perRequest(2)
    assert.equal(cpu?.perRequest.runtime, 2)
    assert.equal(cpu?.perRequest.other, 2)
    assert.equal(cpu?.totalMs, 4)
    assert.equal(cpu?.utilisation, 0.8)
  })

  it('bounds the ratio by the rest of the machine once the Worker costs what the floor route does', () => {
    const perRequest = (runtime: number, postgres: number): CpuPerRequest => ({
      perRequest: { runtime, postgres, gateway: 0, load: 0, other: 0 },
      totalMs: runtime + postgres,
      utilisation: 1,
      requests: 1,
    })
    // 2 cores; the scenario with a 1 ms Worker would cost 1 + 3 = 4 ms: at most 500 req/s.
    const ceiling = ratioCeiling({ cpu: perRequest(1, 0.5), peakRps: 1_000 }, perRequest(5, 3), 2)
    assert.equal(ceiling.maxRps, 500)
    assert.equal(ceiling.ratio, 0.5)
    // Never above the floor itself.
    assert.equal(ratioCeiling({ cpu: perRequest(1, 0), peakRps: 10 }, perRequest(1, 0), 2).ratio, 1)
  })

  it('finds this process on Linux', { skip: !existsSync('/proc/self/stat') }, () => {
    const reading = readCpu({ gateway: process.pid, load: undefined })
    assert.equal(reading?.processes.get(process.pid)?.group, 'gateway')
    assert.ok((reading?.busyMs ?? 0) > 0)
  })
})
