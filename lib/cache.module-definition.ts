import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { CacheModuleOptions } from './cache-module.options.js';

export const {
  ConfigurableModuleClass,
  MODULE_OPTIONS_TOKEN: CACHE_MODULE_OPTIONS,
  OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<CacheModuleOptions>({ moduleName: 'Cache' })
  .setClassMethodName('forRoot')
  .setFactoryMethodName('createCacheOptions')
  .setExtras({ isGlobal: false }, (definition, { isGlobal }) => ({ ...definition, global: isGlobal }))
  .build();

/** What a `useClass` / `useExisting` options provider of forRootAsync implements. */
export interface CacheOptionsFactory {
  createCacheOptions(): CacheModuleOptions | Promise<CacheModuleOptions>;
}
