import { Module, type OnApplicationShutdown } from '@nestjs/common';
import { BaseCache } from './base-cache.js';
import { ConfigurableModuleClass } from './cache.module-definition.js';
import { cacheProvider } from './cache.providers.js';

/**
 * `CacheModule.forRoot({ backend, ttl, prefix, isGlobal, memory, redis })` or
 * `CacheModule.forRootAsync({ imports, inject, useFactory | useClass | useExisting, isGlobal })`.
 * Provides BaseCache, and closes it at application shutdown (after the HTTP server stopped).
 */
@Module({ providers: [cacheProvider], exports: [BaseCache] })
export class CacheModule extends ConfigurableModuleClass implements OnApplicationShutdown {
  constructor(private readonly cache: BaseCache) {
    super();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.cache.close();
  }
}
