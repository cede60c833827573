import { Injectable } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { BaseCache } from 'nest-cache';

export interface Report {
  id: string;
  total: number;
  generatedAt: Date;
}

@Injectable()
export class ReportService {
  /** How many reports were really built: the cache keeps this low. */
  builds = 0;

  constructor(private readonly cache: BaseCache) {}

  /** Built once per id every 60 seconds; concurrent requests for a cold id share one build. */
  report(id: string): Promise<Report> {
    return this.cache.getOrSet(`report:${id}`, () => this.build(id), 60);
  }

  async forget(id: string): Promise<boolean> {
    return this.cache.delete(`report:${id}`);
  }

  private async build(id: string): Promise<Report> {
    this.builds += 1;
    await sleep(Number(process.env.REPORT_BUILD_MS ?? 1_000)); // a slow query, say
    return {
      id,
      total: [...id].reduce((sum, c) => sum + c.charCodeAt(0), 0),
      generatedAt: new Date(),
    };
  }
}
