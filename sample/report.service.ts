import { Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cacheable, invalidateCacheable } from 'nest-cache';

export interface Report {
  id: string;
  total: number;
  generatedAt: Date;
}

@Injectable()
export class ReportService implements OnApplicationBootstrap {
  /** How many reports were really built: the cache keeps this low. */
  builds = 0;

  /**
   * Built once per id every 60 seconds (the key is the class, the method and the id); concurrent
   * requests for a cold id share one build.
   */
  @Cacheable({ ttl: 60, tags: (id: string) => [`report:${id}`] })
  async report(id: string): Promise<Report> {
    this.builds += 1;
    await sleep(Number(process.env.REPORT_BUILD_MS ?? 1_000)); // a slow query, say
    return {
      id,
      total: [...id].reduce((sum, c) => sum + c.charCodeAt(0), 0),
      generatedAt: new Date(),
    };
  }

  /** Drops the cached report of `id`: the next request builds it again. */
  forget(id: string): Promise<boolean> {
    return invalidateCacheable(this.report, id);
  }

  /** Warming: the daily report is built while the app starts, so no visitor waits for it. */
  async onApplicationBootstrap(): Promise<void> {
    if (process.env.WARM_REPORTS !== '0') await this.report('daily');
  }
}
